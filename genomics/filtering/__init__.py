"""The secure variant filtering job (rare disease): local pre-filter, keyed tables, models, reveal, outputs."""
