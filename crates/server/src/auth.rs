//! How the API server knows who is calling: client certificates signed by the cluster CA and
//! service-account tokens signed by the cluster's service-account key; and how it signs the
//! tokens of `serviceaccounts/<name>/token`.

use std::sync::Arc;
use std::time::SystemTime;

use corten_apiserver::serve::CertIdentity;
use corten_apiserver::{
    BoundObject, Identity, IssueError, ServiceAccountClaims, TokenAuthentication, TokenAuthenticator,
    TokenIssuer,
};
use corten_pki::{KubernetesClaims, ObjectRef, ServiceAccountTokens, TokenClaims, DEFAULT_ISSUER};

/// The identity of a verified client certificate: user = CN, groups = O.
pub(crate) fn cert_identity() -> CertIdentity {
    Arc::new(|der| corten_pki::identity_from_cert(der).ok().map(|id| Identity::new(id.user, id.groups)))
}

/// Issues service-account JWTs with the cluster key and accepts them for the API server's
/// audience ([`DEFAULT_ISSUER`]). The API server then checks the claims against the store.
#[derive(Debug, Clone)]
pub(crate) struct ServiceAccountAuthenticator {
    tokens: ServiceAccountTokens,
}

impl ServiceAccountAuthenticator {
    pub(crate) fn new(tokens: ServiceAccountTokens) -> Self {
        ServiceAccountAuthenticator { tokens }
    }
}

fn to_ref(o: &Option<BoundObject>) -> Option<ObjectRef> {
    o.as_ref().map(|o| ObjectRef { name: o.name.clone(), uid: o.uid.clone() })
}

fn from_ref(o: Option<ObjectRef>) -> Option<BoundObject> {
    o.map(|o| BoundObject { name: o.name, uid: o.uid })
}

/// The JWT claims of `claims`, issued by [`DEFAULT_ISSUER`].
fn token_claims(claims: &ServiceAccountClaims) -> TokenClaims {
    TokenClaims {
        iss: DEFAULT_ISSUER.to_string(),
        sub: claims.username(),
        aud: claims.audiences.clone(),
        exp: claims.expires_at,
        iat: claims.issued_at,
        nbf: claims.issued_at,
        jti: claims.id.clone(),
        kubernetes: KubernetesClaims {
            namespace: claims.namespace.clone(),
            serviceaccount: ObjectRef { name: claims.name.clone(), uid: claims.uid.clone() },
            pod: to_ref(&claims.pod),
            secret: to_ref(&claims.secret),
            node: to_ref(&claims.node),
        },
    }
}

impl TokenIssuer for ServiceAccountAuthenticator {
    fn api_audiences(&self) -> Vec<String> {
        vec![DEFAULT_ISSUER.to_string()]
    }

    fn issue(&self, claims: &ServiceAccountClaims) -> Result<String, IssueError> {
        Ok(self.tokens.sign(&token_claims(claims))?)
    }
}

impl TokenAuthenticator for ServiceAccountAuthenticator {
    fn authenticate(&self, token: &str) -> Option<TokenAuthentication> {
        let claims = self.tokens.verify(token, SystemTime::now()).ok()?;
        if claims.iss != DEFAULT_ISSUER || !claims.aud.iter().any(|a| a == DEFAULT_ISSUER) {
            return None;
        }
        let k = claims.kubernetes;
        // The subject must be the service account the private claim names.
        if claims.sub != format!("system:serviceaccount:{}:{}", k.namespace, k.serviceaccount.name) {
            return None;
        }
        let sa = ServiceAccountClaims {
            namespace: k.namespace,
            name: k.serviceaccount.name,
            uid: k.serviceaccount.uid,
            audiences: claims.aud,
            issued_at: claims.iat,
            expires_at: claims.exp,
            id: claims.jti,
            pod: from_ref(k.pod),
            secret: from_ref(k.secret),
            node: from_ref(k.node),
        };
        Some(TokenAuthentication { identity: sa.identity(), service_account: Some(sa) })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn signer() -> ServiceAccountTokens {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let pki = corten_pki::ensure(&corten_pki::PkiOptions::new(dir.path().join("tls")))
            .unwrap_or_else(|e| panic!("pki: {e}"));
        pki.service_account_signer()
    }

    /// A fresh cluster key and a token for `web/builder` with `audience`.
    fn signer_and_token(audience: &str) -> (ServiceAccountTokens, String) {
        let tokens = signer();
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

    fn claims() -> ServiceAccountClaims {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        ServiceAccountClaims {
            namespace: "web".into(),
            name: "builder".into(),
            uid: "sa-uid".into(),
            audiences: vec![DEFAULT_ISSUER.into()],
            issued_at: now,
            expires_at: now + 3600,
            id: Some("jti-1".into()),
            pod: Some(BoundObject { name: "web-0".into(), uid: "pod-uid".into() }),
            secret: None,
            node: Some(BoundObject { name: "n1".into(), uid: String::new() }),
        }
    }

    #[test]
    fn service_account_tokens_map_to_their_user_and_groups() {
        let (tokens, token) = signer_and_token(DEFAULT_ISSUER);
        let auth = ServiceAccountAuthenticator::new(tokens);
        let id = auth.authenticate(&token).unwrap_or_else(|| panic!("valid token rejected")).identity;
        assert_eq!(id.user, "system:serviceaccount:web:builder");
        assert!(id.groups.contains(&"system:serviceaccounts".to_string()));
        assert!(id.groups.contains(&"system:serviceaccounts:web".to_string()));
        assert!(id.groups.contains(&"system:authenticated".to_string()));
        assert!(auth.authenticate("not.a.token").is_none());
    }

    #[test]
    fn tokens_for_another_audience_are_rejected() {
        let (tokens, token) = signer_and_token("vault");
        assert!(ServiceAccountAuthenticator::new(tokens).authenticate(&token).is_none());
    }

    #[test]
    fn issued_tokens_verify_with_the_same_claims() {
        let keys = ServiceAccountAuthenticator::new(signer());
        assert_eq!(keys.api_audiences(), vec![DEFAULT_ISSUER.to_string()]);
        let token = keys.issue(&claims()).unwrap_or_else(|e| panic!("issue: {e}"));
        let auth = keys.authenticate(&token).unwrap_or_else(|| panic!("issued token rejected"));
        assert_eq!(auth.service_account, Some(claims()));
        assert_eq!(auth.identity.user, "system:serviceaccount:web:builder");
    }

    #[test]
    fn issued_tokens_carry_the_upstream_claims() {
        let keys = ServiceAccountAuthenticator::new(signer());
        let token = keys.issue(&claims()).unwrap_or_else(|e| panic!("issue: {e}"));
        let signed = keys.tokens.verify(&token, SystemTime::now()).unwrap_or_else(|e| panic!("verify: {e}"));
        let c = claims();
        assert_eq!(
            (signed.iss.as_str(), signed.sub.as_str()),
            (DEFAULT_ISSUER, "system:serviceaccount:web:builder")
        );
        assert_eq!((signed.iat, signed.nbf, signed.exp), (c.issued_at, c.issued_at, c.expires_at));
        assert_eq!(signed.jti.as_deref(), Some("jti-1"));
        assert_eq!(signed.kubernetes.namespace, "web");
        assert_eq!(
            signed.kubernetes.serviceaccount,
            ObjectRef { name: "builder".into(), uid: "sa-uid".into() }
        );
        assert_eq!(signed.kubernetes.pod, Some(ObjectRef { name: "web-0".into(), uid: "pod-uid".into() }));
        assert_eq!(signed.kubernetes.node, Some(ObjectRef { name: "n1".into(), uid: String::new() }));
        assert_eq!(signed.kubernetes.secret, None);
    }

    #[test]
    fn a_token_of_another_cluster_is_rejected() {
        let ours = ServiceAccountAuthenticator::new(signer());
        let theirs = ServiceAccountAuthenticator::new(signer());
        let token = theirs.issue(&claims()).unwrap_or_else(|e| panic!("issue: {e}"));
        assert!(ours.authenticate(&token).is_none());
    }
}
