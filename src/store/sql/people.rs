//! People ([`crate::store::PeopleStore`]), for both engines.

/// The SQL of [`crate::store::PeopleStore`] for one engine.
macro_rules! people {
    ($store:ident, $conn:ty) => {
        mod people {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use sqlx::Row;

            use super::rows::{member, ms, user};
            use crate::domain::{EmailAddress, Role, UserId, WorkspaceId};
            use crate::store::{Member, NewInvitation, PeopleStore, StoreResult, User};

            const USER: &str = "SELECT id, email, password_hash, last_sign_in_at, operator FROM users";
            const MEMBERS: &str = "SELECT u.id, u.email, u.password_hash, u.last_sign_in_at, u.operator, m.role,
                                          m.created_at AS since
                                   FROM memberships m JOIN users u ON u.id = m.user_id";

            async fn one_user(conn: &mut $conn, id: &str) -> StoreResult<Option<User>> {
                let sql = format!("{USER} WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await?;
                row.as_ref().map(user).transpose()
            }

            async fn one_member(conn: &mut $conn, workspace: &str, user: &str) -> StoreResult<Option<Member>> {
                let sql = format!("{MEMBERS} WHERE m.workspace_id = $1 AND m.user_id = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace)
                    .bind(user)
                    .fetch_optional(conn)
                    .await?;
                row.as_ref().map(member).transpose()
            }

            #[async_trait]
            impl PeopleStore for super::$store {
                async fn invite_member(&self, invitation: NewInvitation) -> StoreResult<Member> {
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let email = invitation.email.as_str().to_lowercase();
                            sqlx::query(
                                "INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)
                                 ON CONFLICT (email) DO NOTHING",
                            )
                            .bind(UserId::generate().as_str())
                            .bind(&email)
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                            let user: String = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                                .bind(&email)
                                .fetch_one(&mut *conn)
                                .await?;
                            sqlx::query(
                                "INSERT INTO memberships (user_id, workspace_id, role, created_at)
                                 VALUES ($1, $2, $3, $4)
                                 ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = excluded.role",
                            )
                            .bind(&user)
                            .bind(invitation.workspace_id.as_str())
                            .bind(invitation.role.as_str())
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                            sqlx::query(
                                "INSERT INTO invitations (token_hash, user_id, workspace_id, expires_at)
                                 VALUES ($1, $2, $3, $4)",
                            )
                            .bind(&invitation.token_hash)
                            .bind(&user)
                            .bind(invitation.workspace_id.as_str())
                            .bind(ms(invitation.expires_at))
                            .execute(&mut *conn)
                            .await?;
                            Ok(one_member(conn, invitation.workspace_id.as_str(), &user).await?.expect("just made"))
                        })
                    })
                    .await
                }

                async fn list_members(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Member>> {
                    let sql = format!("{MEMBERS} WHERE m.workspace_id = $1 ORDER BY m.created_at, u.id");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(workspace_id.as_str())
                        .fetch_all(self.reads())
                        .await?;
                    rows.iter().map(member).collect()
                }

                async fn set_member_role(
                    &self,
                    workspace_id: &WorkspaceId,
                    user: &UserId,
                    role: Role,
                ) -> StoreResult<Option<Member>> {
                    let (workspace, user) = (workspace_id.to_string(), user.to_string());
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("UPDATE memberships SET role = $1 WHERE workspace_id = $2 AND user_id = $3")
                                .bind(role.as_str())
                                .bind(&workspace)
                                .bind(&user)
                                .execute(&mut *conn)
                                .await?;
                            one_member(conn, &workspace, &user).await
                        })
                    })
                    .await
                }

                async fn remove_member(&self, workspace_id: &WorkspaceId, user: &UserId) -> StoreResult<bool> {
                    let (workspace, user) = (workspace_id.to_string(), user.to_string());
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("DELETE FROM invitations WHERE workspace_id = $1 AND user_id = $2")
                                .bind(&workspace)
                                .bind(&user)
                                .execute(&mut *conn)
                                .await?;
                            let done = sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                                .bind(&workspace)
                                .bind(&user)
                                .execute(&mut *conn)
                                .await?;
                            Ok(done.rows_affected() > 0)
                        })
                    })
                    .await
                }

                async fn accept_invitation(
                    &self,
                    token_hash: &str,
                    password_hash: &str,
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<(User, WorkspaceId)>> {
                    let (token_hash, password_hash, now) = (token_hash.to_string(), password_hash.to_string(), ms(now));
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            // Spent by this statement or by none: a second use finds it used.
                            let spent = sqlx::query(
                                "UPDATE invitations SET used_at = $1
                                 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
                                 RETURNING user_id, workspace_id",
                            )
                            .bind(now)
                            .bind(&token_hash)
                            .fetch_optional(&mut *conn)
                            .await?;
                            let Some(spent) = spent else { return Ok(None) };
                            let (user_id, workspace): (String, String) =
                                (spent.try_get("user_id")?, spent.try_get("workspace_id")?);
                            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                                .bind(&password_hash)
                                .bind(&user_id)
                                .execute(&mut *conn)
                                .await?;
                            let found = one_user(conn, &user_id).await?.expect("an invitation's user");
                            Ok(Some((found, WorkspaceId::stored(workspace))))
                        })
                    })
                    .await
                }

                async fn open_invitation(
                    &self,
                    token_hash: &str,
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<(String, WorkspaceId)>> {
                    let row = sqlx::query(
                        "SELECT u.email, i.workspace_id FROM invitations i JOIN users u ON u.id = i.user_id
                         WHERE i.token_hash = $1 AND i.used_at IS NULL AND i.expires_at > $2",
                    )
                    .bind(token_hash)
                    .bind(ms(now))
                    .fetch_optional(self.reads())
                    .await?;
                    row.map(|r| Ok((r.try_get("email")?, WorkspaceId::stored(r.try_get::<String, _>("workspace_id")?))))
                        .transpose()
                }

                async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
                    let sql = format!("{USER} WHERE id = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(self.reads()).await?;
                    row.as_ref().map(user).transpose()
                }

                async fn add_operator(&self, email: &EmailAddress) -> StoreResult<User> {
                    let email = email.as_str().to_lowercase();
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            sqlx::query(
                                "INSERT INTO users (id, email, created_at, operator) VALUES ($1, $2, $3, TRUE)
                                 ON CONFLICT (email) DO UPDATE SET operator = TRUE",
                            )
                            .bind(UserId::generate().as_str())
                            .bind(&email)
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                            let sql = format!("{USER} WHERE email = $1");
                            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&email).fetch_one(&mut *conn).await?;
                            user(&row)
                        })
                    })
                    .await
                }

                async fn set_operator(&self, id: &UserId, operator: bool) -> StoreResult<Option<User>> {
                    let id = id.to_string();
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("UPDATE users SET operator = $1 WHERE id = $2")
                                .bind(operator)
                                .bind(&id)
                                .execute(&mut *conn)
                                .await?;
                            one_user(conn, &id).await
                        })
                    })
                    .await
                }

                async fn list_users(&self) -> StoreResult<Vec<User>> {
                    let sql = format!("{USER} ORDER BY created_at, id");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.reads()).await?;
                    rows.iter().map(user).collect()
                }

                async fn delete_user(&self, id: &UserId) -> StoreResult<bool> {
                    let id = id.to_string();
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            // Each row that names the user, then the user (not left to the
                            // foreign keys, which SQLite enforces only when asked to).
                            for table in ["web_sessions", "password_resets", "invitations", "memberships"] {
                                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE user_id = $1")))
                                    .bind(&id)
                                    .execute(&mut *conn)
                                    .await?;
                            }
                            let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(&id).execute(&mut *conn).await?;
                            Ok(done.rows_affected() > 0)
                        })
                    })
                    .await
                }

                async fn replace_password_link(
                    &self,
                    user: &UserId,
                    token_hash: &str,
                    now: DateTime<Utc>,
                    expires_at: DateTime<Utc>,
                ) -> StoreResult<()> {
                    let (user, token_hash, now, expires_at) =
                        (user.to_string(), token_hash.to_string(), ms(now), ms(expires_at));
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("UPDATE password_resets SET expires_at = $1 WHERE user_id = $2 AND expires_at > $1")
                                .bind(now)
                                .bind(&user)
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("INSERT INTO password_resets (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
                                .bind(&token_hash)
                                .bind(&user)
                                .bind(expires_at)
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
                }

                async fn change_password(&self, user: &UserId, password_hash: &str, keep: &str) -> StoreResult<()> {
                    let (user, password_hash, keep) = (user.to_string(), password_hash.to_string(), keep.to_string());
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                                .bind(&password_hash)
                                .bind(&user)
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("DELETE FROM web_sessions WHERE user_id = $1 AND id <> $2")
                                .bind(&user)
                                .bind(&keep)
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
                }

                async fn spend_invitations(&self, user: &UserId, now: DateTime<Utc>) -> StoreResult<()> {
                    let (user, now) = (user.to_string(), ms(now));
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("UPDATE invitations SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
                                .bind(now)
                                .bind(&user)
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
                }

                async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
                    let sql = format!("{USER} WHERE email = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(email.trim().to_lowercase())
                        .fetch_optional(self.reads())
                        .await?;
                    row.as_ref().map(user).transpose()
                }

                async fn memberships(&self, user: &UserId) -> StoreResult<Vec<(WorkspaceId, Role)>> {
                    let rows = sqlx::query("SELECT workspace_id, role FROM memberships WHERE user_id = $1 ORDER BY created_at")
                        .bind(user.as_str())
                        .fetch_all(self.reads())
                        .await?;
                    rows.iter()
                        .map(|r| {
                            let role = r.try_get::<String, _>("role")?.parse().unwrap_or(Role::Viewer);
                            Ok((WorkspaceId::stored(r.try_get::<String, _>("workspace_id")?), role))
                        })
                        .collect()
                }

                async fn start_password_reset(
                    &self,
                    user: &UserId,
                    token_hash: &str,
                    now: DateTime<Utc>,
                    expires_at: DateTime<Utc>,
                ) -> StoreResult<bool> {
                    let (user, token_hash, now, expires_at) =
                        (user.to_string(), token_hash.to_string(), ms(now), ms(expires_at));
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            let open: bool = sqlx::query_scalar(
                                "SELECT EXISTS (SELECT 1 FROM password_resets
                                                WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2)",
                            )
                            .bind(&user)
                            .bind(now)
                            .fetch_one(&mut *conn)
                            .await?;
                            if open {
                                return Ok(false);
                            }
                            sqlx::query("INSERT INTO password_resets (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
                                .bind(&token_hash)
                                .bind(&user)
                                .bind(expires_at)
                                .execute(&mut *conn)
                                .await?;
                            Ok(true)
                        })
                    })
                    .await
                }

                async fn open_password_reset(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<String>> {
                    Ok(sqlx::query_scalar(
                        "SELECT u.email FROM password_resets r JOIN users u ON u.id = r.user_id
                         WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > $2",
                    )
                    .bind(token_hash)
                    .bind(ms(now))
                    .fetch_optional(self.reads())
                    .await?)
                }

                async fn reset_password(
                    &self,
                    token_hash: &str,
                    password_hash: &str,
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<User>> {
                    let (token_hash, password_hash, now) = (token_hash.to_string(), password_hash.to_string(), ms(now));
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            let spent: Option<String> = sqlx::query_scalar(
                                "UPDATE password_resets SET used_at = $1
                                 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
                                 RETURNING user_id",
                            )
                            .bind(now)
                            .bind(&token_hash)
                            .fetch_optional(&mut *conn)
                            .await?;
                            let Some(user_id) = spent else { return Ok(None) };
                            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                                .bind(&password_hash)
                                .bind(&user_id)
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("DELETE FROM web_sessions WHERE user_id = $1").bind(&user_id).execute(&mut *conn).await?;
                            one_user(conn, &user_id).await
                        })
                    })
                    .await
                }

                async fn note_sign_in(&self, user: &UserId, at: DateTime<Utc>) -> StoreResult<()> {
                    let (user, at) = (user.to_string(), ms(at));
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("UPDATE users SET last_sign_in_at = $1 WHERE id = $2")
                                .bind(at)
                                .bind(&user)
                                .execute(conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
                }
            }
        }
    };
}

pub(in crate::store) use people;
