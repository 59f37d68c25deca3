//! The Events l3lb posts: Warnings for what it refuses ([`refusals`]) and the Normal trail of
//! which nodes announce a Service's VIPs ([`announcements`]).
pub mod announcements;
pub mod refusals;
