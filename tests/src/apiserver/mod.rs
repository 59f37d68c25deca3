//! Test API server (owned by the apiserver work).
