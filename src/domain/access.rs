//! Who may do what. The operator (the admin token, or a user made an operator) may do everything;
//! a workspace's scoped API token, or a person who is a member, acts within that workspace alone, as an admin (everything there) or a viewer (reads,
//! and sees no secret). What a caller may not even see answers as if it did not exist (404);
//! what it sees but may not change answers 403.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Invalid, TokenId, UserId, WorkspaceId};

/// A role within one workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in the workspace: settings, webhooks, sources, chats, tokens.
    Admin,
    /// Reads chats, transcripts, previews and the activity log; sees no secret, changes nothing.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Admin, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Invalid(format!("must be one of admin, viewer (got {s:?})")))
    }
}

/// What a request needs of a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// To read what it holds (no secrets for a viewer).
    Read,
    /// To change it, or to see its secrets.
    Change,
}

/// Why a caller may not do what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It may not see the workspace: answered as if the thing did not exist.
    Hidden,
    /// It sees the workspace but may not do this.
    Forbidden,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin token: every workspace and the instance (the bootstrap and break-glass
    /// credential).
    Operator,
    /// A workspace's API token.
    Token { id: TokenId, name: String, workspace: WorkspaceId, role: Role },
    /// A person signed in to the web page: an operator (every workspace and the instance, like the
    /// admin token, but named) or not, with their role in each workspace they belong to (both read
    /// afresh on every request: a member removed is out at once).
    Person { id: UserId, email: String, operator: bool, workspaces: Vec<(WorkspaceId, Role)> },
}

impl Principal {
    /// Whether it may do `need` in `workspace`.
    pub fn may(&self, workspace: &WorkspaceId, need: Need) -> Result<(), Refusal> {
        let role = match self {
            Principal::Operator | Principal::Person { operator: true, .. } => return Ok(()),
            Principal::Token { workspace: own, role, .. } => (own == workspace).then_some(*role),
            Principal::Person { workspaces, .. } => {
                workspaces.iter().find(|(own, _)| own == workspace).map(|(_, role)| *role)
            }
        };
        match role {
            None => Err(Refusal::Hidden),
            Some(Role::Viewer) if need == Need::Change => Err(Refusal::Forbidden),
            Some(_) => Ok(()),
        }
    }

    /// Whether it may do what only the operator does: create workspaces, instance settings.
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator | Principal::Person { operator: true, .. })
    }

    /// The workspaces it may see (`None`: every workspace).
    pub fn only_workspaces(&self) -> Option<Vec<&WorkspaceId>> {
        match self {
            Principal::Operator | Principal::Person { operator: true, .. } => None,
            Principal::Token { workspace, .. } => Some(vec![workspace]),
            Principal::Person { workspaces, .. } => Some(workspaces.iter().map(|(id, _)| id).collect()),
        }
    }

    /// Whether it may see `workspace`'s secrets (ingest key, inbound URLs, webhook secrets).
    pub fn sees_secrets(&self, workspace: &WorkspaceId) -> bool {
        self.may(workspace, Need::Change).is_ok()
    }

    /// Who did something, as the activity log names them: `operator` (the admin token),
    /// `token:<name>`, or a person's e-mail address.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::Token { name, .. } => format!("token:{name}"),
            Principal::Person { email, .. } => email.clone(),
        }
    }

    /// The person signed in, if it is one.
    pub fn person(&self) -> Option<&UserId> {
        match self {
            Principal::Person { id, .. } => Some(id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_acts_in_its_workspace_alone_and_a_viewer_changes_nothing() {
        let (a, b) = (WorkspaceId::stored("ws_a"), WorkspaceId::stored("ws_b"));
        let token = |role| Principal::Token {
            id: TokenId::stored("tok_1"),
            name: "zap".into(),
            workspace: a.clone(),
            role,
        };
        let (admin, viewer) = (token(Role::Admin), token(Role::Viewer));
        assert_eq!(admin.may(&a, Need::Change), Ok(()));
        assert_eq!(admin.may(&b, Need::Read), Err(Refusal::Hidden), "another workspace does not exist to it");
        assert_eq!(viewer.may(&a, Need::Read), Ok(()));
        assert_eq!(viewer.may(&a, Need::Change), Err(Refusal::Forbidden));
        assert_eq!(viewer.may(&b, Need::Change), Err(Refusal::Hidden));
        assert!(!viewer.sees_secrets(&a) && admin.sees_secrets(&a));
        assert!(Principal::Operator.may(&b, Need::Change).is_ok() && Principal::Operator.is_operator());
        assert!(!admin.is_operator());
        assert_eq!(
            (admin.actor(), Principal::Operator.actor()),
            ("token:zap".to_string(), "operator".to_string())
        );
        assert_eq!("viewer".parse::<Role>(), Ok(Role::Viewer));
        let member = Principal::Person {
            id: UserId::stored("usr_1"),
            email: "mia@acme.example".into(),
            operator: false,
            workspaces: vec![(a.clone(), Role::Viewer), (b.clone(), Role::Admin)],
        };
        assert_eq!(member.may(&a, Need::Change), Err(Refusal::Forbidden));
        assert_eq!(member.may(&b, Need::Change), Ok(()));
        let c = WorkspaceId::stored("ws_c");
        assert_eq!(member.may(&c, Need::Read), Err(Refusal::Hidden));
        assert_eq!(member.actor(), "mia@acme.example");
        assert_eq!(member.only_workspaces(), Some(vec![&a, &b]));
        assert!("owner".parse::<Role>().is_err());
        assert!(!member.is_operator());
        let operator = Principal::Person {
            id: UserId::stored("usr_2"),
            email: "ops@acme.example".into(),
            operator: true,
            workspaces: vec![(a.clone(), Role::Viewer)],
        };
        assert_eq!(operator.may(&a, Need::Change), Ok(()), "an operator is more than their memberships");
        assert_eq!(operator.may(&c, Need::Change), Ok(()));
        assert!(operator.is_operator() && operator.only_workspaces().is_none());
        assert_eq!(operator.actor(), "ops@acme.example", "named in the log, unlike the admin token");
    }
}
