//! How the API server knows who is calling: client certificates signed by the cluster CA and
//! service-account tokens signed by the cluster's service-account key.

use std::sync::Arc;
use std::time::SystemTime;

use corten_apiserver::serve::CertIdentity;
use corten_apiserver::{Identity, TokenAuthenticator};
use corten_pki::{ServiceAccountTokens, DEFAULT_ISSUER};

/// The identity of a verified client certificate: user = CN, groups = O.
pub(crate) fn cert_identity() -> CertIdentity {
    Arc::new(|der| corten_pki::identity_from_cert(der).ok().map(|id| Identity::new(id.user, id.groups)))
}

/// Accepts service-account JWTs signed by the cluster key for the API server's audience.
pub(crate) struct ServiceAccountAuthenticator {
    tokens: ServiceAccountTokens,
}

impl ServiceAccountAuthenticator {
    pub(crate) fn new(tokens: ServiceAccountTokens) -> Self {
        ServiceAccountAuthenticator { tokens }
    }
}

impl TokenAuthenticator for ServiceAccountAuthenticator {
    fn authenticate(&self, token: &str) -> Option<Identity> {
        let claims = self.tokens.verify(token, SystemTime::now()).ok()?;
        if !claims.aud.iter().any(|a| a == DEFAULT_ISSUER) {
            return None;
        }
        let namespace = claims.sub.strip_prefix("system:serviceaccount:")?.split(':').next()?.to_string();
        let groups = ["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{namespace}")];
        Some(Identity::new(claims.sub, groups))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use corten_pki::TokenClaims;

    use super::*;

    /// A fresh cluster key and a token for `web/builder` with `audience`.
    fn signer_and_token(audience: &str) -> (ServiceAccountTokens, String) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let pki = corten_pki::ensure(&corten_pki::PkiOptions::new(dir.path().join("tls")))
            .unwrap_or_else(|e| panic!("pki: {e}"));
        let tokens = pki.service_account_signer();
        let claims = TokenClaims::for_service_account(
            "web",
            "builder",
            "uid-1",
            vec![audience.to_string()],
            SystemTime::now(),
            Duration::from_secs(600),
        );
        let token = tokens.sign(&claims).unwrap_or_else(|e| panic!("sign: {e}"));
        (tokens, token)
    }

    #[test]
    fn service_account_tokens_map_to_their_user_and_groups() {
        let (tokens, token) = signer_and_token(DEFAULT_ISSUER);
        let auth = ServiceAccountAuthenticator::new(tokens);
        let id = auth.authenticate(&token).unwrap_or_else(|| panic!("valid token rejected"));
        assert_eq!(id.user, "system:serviceaccount:web:builder");
        assert!(id.groups.contains(&"system:serviceaccounts:web".to_string()));
        assert!(id.groups.contains(&"system:authenticated".to_string()));
        assert!(auth.authenticate("not.a.token").is_none());
    }

    #[test]
    fn tokens_for_another_audience_are_rejected() {
        let (tokens, token) = signer_and_token("vault");
        assert!(ServiceAccountAuthenticator::new(tokens).authenticate(&token).is_none());
    }
}
