{#- A WebAssembly (WASI) module run as is: the --code file, or --module NAME.wasm in a --code
    folder; its argv is the arguments after --. No network. Job template for
    `shoal exec wasm`. Every {{ expression }} renders as a JSON value.
    Variables: name, command, arguments (the CLI fills them), module (default: the --code
    file). -#}
{
  "name": {{ name }},
  "type": "batch",
  "labels": {"job-type": "wasm"},
  "tasks": [
    {
      "name": "main",
      "engine": {
        "type": "wasm",
        "params": {
          "module": {{ module | default("") | string }},
          "command": {{ command }},
          "arguments": {{ arguments }}
        }
      }
    }
  ]
}
