{#- Python code with its dependencies installed first (requirements.txt, pyproject.toml or
    the entry module's docstring). Job template for `shoal exec python`. Every {{ expression }}
    renders as a JSON value.
    Variables: name, command, arguments (the CLI fills them), version (default 3.11),
    runtime (docker, the default, or wasm: the executors' WASI CPython 3.15, no network). -#}
{
  "name": {{ name }},
  "type": "batch",
  "labels": {"job-type": "python"},
  "tasks": [
    {
      "name": "main",
      "engine": {
        "type": "python",
        "params": {
          "version": {{ version | default("3.11") | string }},
          "runtime": {{ runtime | default("docker") | string }},
          "command": {{ command }},
          "arguments": {{ arguments }}
        }
      }
    }
  ]
}
