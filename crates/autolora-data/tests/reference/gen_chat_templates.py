"""Writes tiny-chat/ and chat_templates.json: how transformers renders conversations with chat
templates of the common families, and which tokens `return_assistant_tokens_mask` marks, for
tests/chat_templates.rs.

* tiny-chat/: a byte-level BPE tokenizer.json trained on the project-written sentences below,
  with the special tokens of the templates (ChatML's `<|im_start|>` / `<|im_end|>`, Llama 3's
  header and end-of-turn tokens, Mistral's `[INST]` / `[/INST]`, `<s>` / `</s>`).
* chat_templates.json: per template (written here in the style of each family; SmolLM2's is
  the one the SmolLM2-135M-Instruct GGUF asset carries) and conversation, the text of
  `apply_chat_template(messages, chat_template=t, tokenize=False)`, and for templates with
  `{% generation %}` blocks the ids and the assistant-token mask of
  `apply_chat_template(..., tokenize=True, return_dict=True, return_assistant_tokens_mask=True)`.

Run with the project's reference venv (`cargo xtask setup` installs it):

    ~/.cache/autolora/python/torch-2.11.0/bin/python gen_chat_templates.py
"""

import json
import os
from importlib.metadata import version

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "tiny-chat")
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "[INST]", "[/INST]"]

CORPUS = [
    "You are a helpful assistant. Is this review positive or negative?",
    "A gorgeous, witty, seductive movie. positive",
    "The film is strictly routine. negative",
    "Hello! How are you today? I am fine, thank you.",
    "system user assistant",
]

TEMPLATES = {
    # SmolLM2-135M-Instruct (the GGUF asset's tokenizer.chat_template).
    "smollm2": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # ChatML with transformers' generation blocks around the assistant's content.
    "chatml-generation": (
        "{%- for message in messages %}\n"
        "    {{- '<|im_start|>' + message.role + '\n' }}\n"
        "    {%- if message.role == 'assistant' %}\n"
        "        {%- generation %}{{- message.content | trim + '<|im_end|>\n' }}{%- endgeneration %}\n"
        "    {%- else %}\n"
        "        {{- message.content | trim + '<|im_end|>\n' }}\n"
        "    {%- endif %}\n"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}\n"
    ),
    # Llama 3 style: BOS, headers, a namespace, strip().
    "llama3-style": (
        "{{- bos_token }}\n"
        "{%- set ns = namespace(system='') %}\n"
        "{%- if messages[0]['role'] == 'system' %}{%- set ns.system = messages[0]['content'].strip() %}"
        "{%- set messages = messages[1:] %}{%- endif %}\n"
        "{%- if ns.system %}{{- '<|start_header_id|>system<|end_header_id|>\n\n' + ns.system + '<|eot_id|>' }}{%- endif %}\n"
        "{%- for message in messages %}\n"
        "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}\n"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}\n"
    ),
    # Mistral style: alternation enforced with raise_exception, loop.index0, eos after answers.
    "mistral-style": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
    ),
}

CONVERSATIONS = {
    "one-turn": [
        {"role": "user", "content": "Is this review positive or negative? A gorgeous, witty movie."},
        {"role": "assistant", "content": "positive"},
    ],
    "system-two-turns": [
        {"role": "system", "content": "You are a helpful assistant. "},
        {"role": "user", "content": "Hello! How are you today?"},
        {"role": "assistant", "content": "I am fine, thank you."},
        {"role": "user", "content": "The film is strictly routine."},
        {"role": "assistant", "content": " negative "},
    ],
}


def write_tokenizer():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    os.makedirs(TOKENIZER, exist_ok=True)
    tok.save(os.path.join(TOKENIZER, "tokenizer.json"))


def main():
    write_tokenizer()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(TOKENIZER, "tokenizer.json"),
                                  bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    cases = []
    for name, template in TEMPLATES.items():
        for conversation, messages in CONVERSATIONS.items():
            case = {"template": name, "conversation": conversation}
            try:
                case["text"] = tok.apply_chat_template(messages, chat_template=template,
                                                       tokenize=False)
            except Exception as e:  # the template refuses the conversation
                case["error"] = str(e)
                cases.append(case)
                continue
            if "{%- generation" in template or "{% generation" in template:
                out = tok.apply_chat_template(messages, chat_template=template, tokenize=True,
                                              return_dict=True, return_assistant_tokens_mask=True)
                case["input_ids"] = out["input_ids"]
                case["assistant_masks"] = out["assistant_masks"]
            cases.append(case)
    out = {
        "generated_by": "gen_chat_templates.py",
        "versions": {p: version(p) for p in ["transformers", "tokenizers"]},
        "bos_token": "<s>",
        "eos_token": "</s>",
        "templates": TEMPLATES,
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    with open(os.path.join(HERE, "chat_templates.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
