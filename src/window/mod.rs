//! Windows: their boundaries ([`bounds`]), and the closer that turns each chat's buffered
//! messages into bundles when a window ends ([`closer`]).

pub mod bounds;
pub mod closer;
