//! A workspace's members as both front ends change them: invitations, roles, removal, each noted
//! in the activity log with who did it.

use serde_json::json;

use crate::domain::{EmailAddress, Role, UserId, WorkspaceId, random_token};
use crate::http::auth::api_token_hash;
use crate::service::AppState;
use crate::store::{Member, NewInvitation, StoreResult};

/// How long an invitation link works.
pub const INVITATION_DAYS: i64 = 7;

/// Invites `email` to the workspace as `role`: the member, and the single-use link (good for
/// [`INVITATION_DAYS`]) where they choose a password. Only the link's SHA-256 is kept.
pub async fn invite(
    state: &AppState,
    workspace_id: &WorkspaceId,
    email: EmailAddress,
    role: Role,
    actor: &str,
) -> StoreResult<(Member, String)> {
    let token = format!("inv_{}", random_token(40));
    let invitation = NewInvitation {
        workspace_id: workspace_id.clone(),
        email,
        role,
        token_hash: api_token_hash(&token),
        expires_at: state.clock.now() + chrono::Duration::days(INVITATION_DAYS),
    };
    let member = state.store.invite_member(invitation).await?;
    let link = format!("{}/invite/{token}", state.public_url);
    let mut detail = json!({"email": member.user.email, "role": member.role, "emailed": false});
    // With an SMTP server, the invitation goes out by e-mail too, in the workspace's language.
    if let Some(mail) = &state.mail
        && let Some(workspace) = state.store.get_workspace(workspace_id).await?
    {
        let admin = member.role == Role::Admin;
        let email = crate::notify::invitation_email(
            workspace.locale,
            workspace.name.as_str(),
            &member.user.email,
            admin,
            &link,
        );
        state.store.queue_email(&email, workspace_id).await?;
        mail.notify_one();
        detail["emailed"] = json!(true);
    }
    super::activity::note(state, workspace_id, None, ("member_invited", actor), detail).await;
    tracing::info!(user_id = %member.user.id, role = member.role.as_str(), "member invited");
    Ok((member, link))
}

/// Gives a member another role; `None`: no such member.
pub async fn set_role(
    state: &AppState,
    workspace_id: &WorkspaceId,
    user: &UserId,
    role: Role,
    actor: &str,
) -> StoreResult<Option<Member>> {
    let member = state.store.set_member_role(workspace_id, user, role).await?;
    if let Some(member) = &member {
        let detail = json!({"email": member.user.email, "role": member.role});
        super::activity::note(state, workspace_id, None, ("member_role_changed", actor), detail).await;
    }
    Ok(member)
}

/// Removes a member: out of the workspace at their next request. `false`: no such member.
pub async fn remove(
    state: &AppState,
    workspace_id: &WorkspaceId,
    user: &UserId,
    actor: &str,
) -> StoreResult<bool> {
    let email = state.store.user(user).await?.map(|u| u.email);
    let removed = state.store.remove_member(workspace_id, user).await?;
    if removed {
        super::activity::note(state, workspace_id, None, ("member_removed", actor), json!({"email": email}))
            .await;
    }
    Ok(removed)
}
