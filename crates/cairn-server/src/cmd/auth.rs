//! AUTH [username] password
//!
//! No users or passwords exist yet, so this behaves like Redis with no
//! `requirepass`: the default user accepts any password, other users do
//! not exist.

use super::{Ctx, Flow};

pub(crate) const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
pub(crate) const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Checks a username/password pair; `Err` holds the error to reply.
pub(crate) fn check(user: &[u8], _pass: &[u8]) -> Result<(), &'static str> {
    if user == b"default" {
        Ok(())
    } else {
        Err(WRONGPASS)
    }
}

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    match argv {
        [_, _pass] => ctx.out.error(NO_PASSWORD),
        [_, user, pass] => match check(user, pass) {
            Ok(()) => ctx.out.simple("OK"),
            Err(e) => ctx.out.error(e),
        },
        _ => ctx.out.error(cairn_engine::cmd::SYNTAX),
    }
    Flow::Continue
}
