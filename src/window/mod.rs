//! Windows: their boundaries ([`bounds`]), and the closer that turns each chat's buffered
//! messages into bundles when a window ends.

pub mod bounds;
