"""Reports on an expansion: summary tables, drawings, and their output formats."""
