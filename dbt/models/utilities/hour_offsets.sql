-- Hour offsets 0 .. 9999 (a bill line up to ~13 months long can be spread per hour).
{{ integer_spine(4) }}
