//! tollgate's YAML configuration: raw serde shapes, validation with field paths, typed config.
