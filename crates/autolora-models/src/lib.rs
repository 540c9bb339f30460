//! # autolora-models
