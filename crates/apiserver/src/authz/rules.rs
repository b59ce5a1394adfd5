//! RBAC policy rules: whether a rule allows a request (upstream `RuleAllows`), whether a set of
//! rules covers another (`Covers`, for escalation checks) and the compact form error messages
//! print rules in.

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::Attributes;

/// One `PolicyRule`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

impl From<&PolicyRule> for Rule {
    fn from(r: &PolicyRule) -> Self {
        Rule {
            verbs: r.verbs.clone(),
            api_groups: r.api_groups.clone().unwrap_or_default(),
            resources: r.resources.clone().unwrap_or_default(),
            resource_names: r.resource_names.clone().unwrap_or_default(),
            non_resource_urls: r.non_resource_urls.clone().unwrap_or_default(),
        }
    }
}

impl From<&Rule> for PolicyRule {
    fn from(r: &Rule) -> Self {
        let opt = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        PolicyRule {
            verbs: r.verbs.clone(),
            api_groups: opt(&r.api_groups),
            resources: opt(&r.resources),
            resource_names: opt(&r.resource_names),
            non_resource_urls: opt(&r.non_resource_urls),
        }
    }
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

impl Rule {
    /// Whether this rule allows the request `a`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !(has(&self.verbs, "*") || has(&self.verbs, &a.verb)) {
            return false;
        }
        if !a.resource_request {
            return self.non_resource_urls.iter().any(|u| url_matches(u, &a.path));
        }
        let group_ok = has(&self.api_groups, "*") || has(&self.api_groups, &a.group);
        let combined = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource_ok = self.resources.iter().any(|r| {
            r == "*" || *r == combined || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
        });
        let name_ok = self.resource_names.is_empty() || has(&self.resource_names, &a.name);
        group_ok && resource_ok && name_ok
    }

    /// Whether this (owner) rule covers the (atomic or not) rule `sub`: upstream `ruleCovers`.
    fn covers(&self, sub: &Rule) -> bool {
        let verbs = has(&self.verbs, "*") || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, "*") || has_all(&self.api_groups, &sub.api_groups);
        let resources = resources_cover(&self.resources, &sub.resources);
        let urls =
            sub.non_resource_urls.iter().all(|u| self.non_resource_urls.iter().any(|o| url_matches(o, u)));
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || has_all(&self.resource_names, &sub.resource_names)
        };
        verbs && groups && resources && urls && names
    }

    /// The rule split into rules of one verb, group, resource and name (or URL) each.
    fn atoms(&self) -> Vec<Rule> {
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let base = Rule {
                        verbs: vec![verb.clone()],
                        api_groups: vec![group.clone()],
                        resources: vec![resource.clone()],
                        ..Rule::default()
                    };
                    if self.resource_names.is_empty() {
                        out.push(base);
                    } else {
                        for name in &self.resource_names {
                            out.push(Rule { resource_names: vec![name.clone()], ..base.clone() });
                        }
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(Rule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: vec![url.clone()],
                    ..Rule::default()
                });
            }
        }
        out
    }

    /// Upstream `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub fn compact_string(&self) -> String {
        let q =
            |v: &[String]| format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "));
        let mut parts = Vec::new();
        for (label, v) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !v.is_empty() {
                parts.push(format!("{label}:{}", q(v)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

fn url_matches(rule: &str, path: &str) -> bool {
    rule == "*" || rule == path || rule.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
}

fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, "*") {
        return true;
    }
    wanted
        .iter()
        .all(|w| has(owner, w) || w.split_once('/').is_some_and(|(_, sub)| has(owner, &format!("*/{sub}"))))
}

/// The atomic rules of `servant` that `owner` does not cover (empty: `owner` covers it all),
/// compacted like upstream: rules differing only in their verb are merged.
pub(crate) fn missing(owner: &[Rule], servant: &[Rule]) -> Vec<Rule> {
    let mut missing: Vec<Rule> = Vec::new();
    for atom in servant.iter().flat_map(Rule::atoms) {
        if owner.iter().any(|o| o.covers(&atom)) {
            continue;
        }
        match missing.iter_mut().find(|m| Rule { verbs: atom.verbs.clone(), ..(*m).clone() } == atom) {
            Some(m) => {
                if !has(&m.verbs, &atom.verbs[0]) {
                    m.verbs.push(atom.verbs[0].clone());
                }
            }
            None => missing.push(atom),
        }
    }
    missing.sort_by_key(Rule::compact_string);
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Rule { verbs: s(verbs), api_groups: s(groups), resources: s(resources), ..Rule::default() }
    }

    fn resource(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn wildcards_and_subresources_match_like_upstream() {
        let r = rule(&["get"], &[""], &["pods"]);
        assert!(r.allows(&resource("get", "", "pods", "", "")));
        assert!(!r.allows(&resource("get", "", "pods", "log", "")));
        assert!(!r.allows(&resource("list", "", "pods", "", "")));
        assert!(rule(&["*"], &["*"], &["*"]).allows(&resource(
            "delete",
            "apps",
            "deployments",
            "scale",
            "x"
        )));
        assert!(rule(&["get"], &[""], &["*/log"]).allows(&resource("get", "", "pods", "log", "")));
        assert!(rule(&["get"], &[""], &["pods/log"]).allows(&resource("get", "", "pods", "log", "")));
        let named = Rule { resource_names: vec!["web".into()], ..rule(&["get"], &[""], &["pods"]) };
        assert!(named.allows(&resource("get", "", "pods", "", "web")));
        assert!(!named.allows(&resource("get", "", "pods", "", "db")));
        assert!(!named.allows(&resource("list", "", "pods", "", "")));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_trailing_star() {
        let r =
            Rule { verbs: vec!["get".into()], non_resource_urls: vec!["/apis/*".into()], ..Rule::default() };
        let path = |p: &str| Attributes { verb: "get".into(), path: p.into(), ..Attributes::default() };
        assert!(r.allows(&path("/apis/apps")));
        assert!(!r.allows(&path("/api")));
        assert!(!rule(&["*"], &["*"], &["*"]).allows(&path("/healthz")));
    }

    #[test]
    fn missing_rules_are_atomic_and_merged_by_verb() {
        let owner = [rule(&["get", "list"], &[""], &["pods"])];
        assert!(missing(&owner, &[rule(&["get"], &[""], &["pods"])]).is_empty());
        let m = missing(&owner, &[rule(&["get", "create", "delete"], &[""], &["pods", "secrets"])]);
        let text: Vec<String> = m.iter().map(Rule::compact_string).collect();
        assert_eq!(
            text,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["create" "delete"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "create" "delete"]}"#,
            ]
        );
        assert!(missing(
            &[rule(&["*"], &["*"], &["*"])],
            &[rule(&["get"], &["apps"], &["deployments/scale"])]
        )
        .is_empty());
    }
}
