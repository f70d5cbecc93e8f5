"""Print how to talk to the demo gateway that `make run` is about to start."""

import sys

host, port = sys.argv[1], sys.argv[2]
base = f"http://{host}:{port}"
chat = '{"model": "smollm2", "messages": [{"role": "user", "content": "Say hello"}]}'
sdk = (
    "from openai import OpenAI\n"
    f"client = OpenAI(base_url='{base}/v1', api_key='none')\n"
    "answer = client.chat.completions.create(\n"
    "    model='smollm2', messages=[{'role': 'user', 'content': 'Say hello'}])\n"
    "print(answer.choices[0].message.content)"
)
url = "" if port == "12434" and host == "127.0.0.1" else f" --url {base}"
print(
    f"""
llama-gateway is starting on {base}, serving SmolLM2-135M as the model "smollm2".
When the log says "gateway ready", in a second terminal in this folder:

  .venv/bin/llama-gateway run smollm2{url}        # chat (/? for help, /bye to leave)
  .venv/bin/llama-gateway ps{url}                 # the runner: slots, KV cache, pid

  (or `source .venv/bin/activate` once, then just `llama-gateway …`)

or with curl:

  curl {base}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{chat}'

or with the openai SDK (.venv/bin/python):

{sdk}
""",
    flush=True,
)
