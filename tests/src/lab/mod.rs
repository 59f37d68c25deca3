//! Network-namespace lab (owned by the lab work).
