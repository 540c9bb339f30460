//! Chat templates: a conversation rendered as the model's own `chat_template` renders it, and
//! where in the rendered text the assistant's turns are, so training can count only them.
//!
//! The template is Jinja, run by `minijinja` set up as transformers sets up its environment
//! for `apply_chat_template`: blocks trimmed (`trim_blocks`, `lstrip_blocks`), loop controls,
//! Python's string and dict methods (`minijinja-contrib`'s pycompat), `raise_exception`, and
//! the variables `messages`, `add_generation_prompt`, `bos_token` and `eos_token`.
//! transformers' `{% generation %}` blocks (which mark the assistant's tokens for
//! `return_assistant_tokens_mask`) are accepted and render their contents. `strftime_now` is
//! not defined, so templates that print today's date take their fixed fallback date and a
//! run stays reproducible.
//!
//! The assistant turns are found by rendering prefixes of the conversation: turn `i` starts
//! where the conversation up to `i` rendered with the generation prompt ends, and ends where
//! the conversation through `i` ends. So a turn includes whatever the template writes after
//! the message (an end-of-turn token such as `<|im_end|>`), which the model must learn to emit
//! to stop. A template whose renders of shorter conversations are not prefixes of the whole
//! (some reasoning templates drop earlier turns' thoughts) is an error, not a guess.

use std::ops::Range;

use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

use crate::error::{Error, Result};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (or any role the template knows).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

/// The role whose turns are trained on.
pub const ASSISTANT: &str = "assistant";

/// A conversation rendered, with the byte ranges of its assistant turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedChat {
    /// The rendered text.
    pub text: String,
    /// Byte ranges of `text` the assistant's turns occupy, in order.
    pub assistant: Vec<Range<usize>>,
}

/// A compiled chat template with the special tokens it may print.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where the template came from (a file, or a GGUF key), for error messages.
    origin: String,
    bos_token: String,
    eos_token: String,
}

/// The template's name inside the environment.
const NAME: &str = "chat";

impl ChatTemplate {
    /// Compiles `source` (read from `origin`); `bos_token` and `eos_token` are the texts of
    /// the tokenizer's special tokens (empty when it has none).
    pub fn new(source: &str, origin: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned(NAME, without_generation_tags(source))
            .map_err(|e| template_error(origin, "compiling it", &e))?;
        Ok(ChatTemplate {
            env,
            origin: origin.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The conversation as text, as `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` renders it.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&self.origin, "loading it", &e))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| template_error(&self.origin, "rendering a conversation", &e))
    }

    /// The conversation rendered and the byte ranges of its assistant turns (see the module
    /// docs). An error when the template renders shorter conversations as anything but
    /// prefixes of the whole.
    pub fn render_with_spans(&self, messages: &[Message]) -> Result<RenderedChat> {
        let text = self.render(messages, false)?;
        let mut assistant = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            if message.role != ASSISTANT {
                continue;
            }
            let before = self.render(&messages[..i], true)?;
            let through = self.render(&messages[..=i], false)?;
            if !text.starts_with(&through) || !through.starts_with(&before) {
                return Err(Error::invalid(
                    format!("chat template {}", self.origin),
                    "a template that renders the turns of a conversation in order, each \
                     conversation's start the same as a shorter one's (so the assistant's \
                     turns can be located)",
                    format!(
                        "a render of the first {} turns that the whole does not start with",
                        i + 1
                    ),
                ));
            }
            assistant.push(before.len()..through.len());
        }
        Ok(RenderedChat { text, assistant })
    }
}

/// `source` with transformers' `{% generation %}` / `{% endgeneration %}` tags removed (their
/// contents kept), whitespace control (`{%-`, `-%}`) included.
fn without_generation_tags(source: &str) -> String {
    let tags = regex::Regex::new(r"\{%-?\s*(?:end)?generation\s*-?%\}").expect("a valid pattern");
    tags.replace_all(source, "").into_owned()
}

fn template_error(origin: &str, doing: &str, e: &minijinja::Error) -> Error {
    let mut found = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        found.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    Error::invalid(
        format!("chat template {origin}, {doing}"),
        "a Jinja template that renders (as transformers' apply_chat_template does)",
        found,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + \
        message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}\
        {{ '<|im_start|>assistant\n' }}{% endif %}";

    fn chat(turns: &[(&str, &str)]) -> Vec<Message> {
        turns
            .iter()
            .map(|(role, content)| Message {
                role: role.to_string(),
                content: content.to_string(),
            })
            .collect()
    }

    #[test]
    fn assistant_turns_are_located_with_their_end_of_turn() -> Result<()> {
        let template = ChatTemplate::new(CHATML, "test", "", "<|im_end|>")?;
        let messages = chat(&[
            ("user", "hi"),
            ("assistant", "hello"),
            ("user", "bye"),
            ("assistant", "ok"),
        ]);
        let rendered = template.render_with_spans(&messages)?;
        let spans: Vec<&str> = rendered
            .assistant
            .iter()
            .map(|r| &rendered.text[r.clone()])
            .collect();
        assert_eq!(spans, ["hello<|im_end|>\n", "ok<|im_end|>\n"]);
        assert!(
            rendered
                .text
                .starts_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello")
        );
        Ok(())
    }

    #[test]
    fn generation_tags_python_methods_and_raised_errors() -> Result<()> {
        let source = "{% for m in messages %}{% if m.role == 'user' %}U: {{ m.content.strip() }}\n\
            {% elif m.role == 'assistant' %}{% generation %}A: {{ m.content }}{{ eos_token }}{% endgeneration %}\n\
            {% else %}{{ raise_exception('unknown role ' + m.role) }}{% endif %}{% endfor %}";
        let template = ChatTemplate::new(source, "test", "<s>", "</s>")?;
        let text = template.render(&chat(&[("user", "  hi "), ("assistant", "yo")]), false)?;
        assert_eq!(text, "U: hi\nA: yo</s>\n");
        let err = template
            .render(&chat(&[("tool", "x")]), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown role tool") && err.contains("chat template test"),
            "{err}"
        );
        let err = ChatTemplate::new("{% for %}", "bad.jinja", "", "")
            .err()
            .expect("a syntax error");
        assert!(err.to_string().contains("bad.jinja"), "{err}");
        Ok(())
    }

    #[test]
    fn a_template_that_rewrites_earlier_turns_is_refused() -> Result<()> {
        // Prints only the last assistant turn's content: shorter conversations are no prefix.
        let source = "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}\
            [old]{% else %}{{ m.content }}{% endif %}|{% endfor %}";
        let template = ChatTemplate::new(source, "test", "", "")?;
        let messages = chat(&[
            ("user", "a"),
            ("assistant", "b"),
            ("user", "c"),
            ("assistant", "d"),
        ]);
        let err = template
            .render_with_spans(&messages)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot") || err.contains("located"), "{err}");
        Ok(())
    }
}
