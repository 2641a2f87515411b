{#- SQL on the DuckDB CLI: a query, or duckdb's own arguments. Job template for
    `shoal exec duckdb`. Every {{ expression }} renders as a JSON value.
    Variables: name, command, arguments (the CLI fills them). -#}
{
  "name": {{ name }},
  "type": "batch",
  "labels": {"job-type": "duckdb"},
  "tasks": [
    {
      "name": "main",
      "engine": {
        "type": "duckdb",
        "params": {
          "command": {{ command }},
          "arguments": {{ arguments }}
        }
      }
    }
  ]
}
