//! Windows: their boundaries ([`bounds`]), and the closer that turns each chat's buffered
//! messages into bundles when a window ends ([`closer`]), and how a replay groups history the same
//! way ([`replay`]).

pub mod bounds;
pub mod bundling;
pub mod closer;
pub mod replay;
