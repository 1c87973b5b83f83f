//! The tool-call policy: decisions on tool definitions and on the calls a model proposes.
