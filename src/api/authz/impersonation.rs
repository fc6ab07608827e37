//! Impersonation (`kubectl --as`, `--as-group`): the `Impersonate-User` and
//! `Impersonate-Group` headers make a request run as another user, when the caller
//! may `impersonate` that user (resource `users`, or `serviceaccounts` in its
//! namespace for `system:serviceaccount:<ns>:<name>`) and each group (resource
//! `groups`), as kube-apiserver checks. The impersonated user gets
//! `system:authenticated` (and a service account its groups) as any real one would.
//! `Impersonate-Uid` and `Impersonate-Extra-*` are not supported: such a request is
//! refused rather than run without them.
//!
//! Owns: the impersonation check. May call: [`super::rbac`].

use axum::http::HeaderMap;

use super::{forbidden, is_master, rbac, Attributes};
use crate::api::status::ApiError;
use crate::api::SharedState;
use crate::pki::Identity;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";

/// The identity the request runs as: `None` when it impersonates no one.
pub async fn impersonated(
    state: &SharedState,
    caller: &Identity,
    headers: &HeaderMap,
) -> Result<Option<Identity>, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let users = values(USER);
    let groups = values(GROUP);
    let unsupported = headers.keys().any(|k| {
        let k = k.as_str();
        k == "impersonate-uid" || k.starts_with("impersonate-extra-")
    });
    if users.is_empty() {
        if !groups.is_empty() || unsupported {
            return Err(ApiError::bad_request(
                "impersonating groups or extra fields requires impersonating a user",
            ));
        }
        return Ok(None);
    }
    if unsupported {
        return Err(ApiError::bad_request(
            "Impersonate-Uid and Impersonate-Extra-* are not supported",
        ));
    }
    let [user] = users.as_slice() else {
        return Err(ApiError::bad_request(
            "only one Impersonate-User may be given",
        ));
    };
    let mut checks = vec![user_attributes(user)];
    checks.extend(groups.iter().map(|g| Attributes {
        verb: "impersonate",
        resource: "groups".into(),
        name: g.clone(),
        ..Default::default()
    }));
    if !is_master(caller) {
        let who = rbac::User::from_identity(caller);
        for attrs in &checks {
            let request = rbac::Request::Resource(attrs);
            if !state.rbac.allows(&state.store, &who, &request).await {
                return Err(forbidden(caller, attrs, ""));
            }
        }
    }
    Ok(Some(Identity {
        user: user.clone(),
        groups,
    }))
}

fn user_attributes(user: &str) -> Attributes {
    let service_account = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match service_account {
        Some((ns, name)) => Attributes {
            verb: "impersonate",
            resource: "serviceaccounts".into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        },
        None => Attributes {
            verb: "impersonate",
            resource: "users".into(),
            name: user.into(),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_are_impersonated_through_their_namespace() {
        let a = user_attributes("system:serviceaccount:dev:ci");
        assert_eq!(
            (a.resource.as_str(), a.namespace.as_str(), a.name.as_str()),
            ("serviceaccounts", "dev", "ci")
        );
        let a = user_attributes("jane");
        assert_eq!((a.resource.as_str(), a.name.as_str()), ("users", "jane"));
    }
}
