// Built-in chat formats: how a conversation becomes the text a model was trained on. The text
// holds special markers (e.g. "<|im_start|>") that the tokenizer turns into their ids when it
// encodes with parse_special.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace folio {

enum class ChatFormatKind {
  Plain,    // no template: system text, a blank line, the user text (base models, stories260K)
  ChatML,   // Qwen2/2.5, SmolLM2
  Llama2,
  Llama3,
  Mistral,
  Phi3,
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

const char* chat_format_name(ChatFormatKind kind);
std::optional<ChatFormatKind> chat_format_from_name(std::string_view name);  // "chatml", "llama3" ...

// Renders messages; with add_generation_prompt the text ends where the assistant's reply begins.
std::string render_chat(ChatFormatKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt);

// Whether the tokenizer should prepend BOS (false where the template writes it as text).
bool chat_format_adds_bos(ChatFormatKind kind);

// The marker texts that end an assistant turn in this format (besides the model's EOS).
std::vector<std::string> chat_end_markers(ChatFormatKind kind);

}  // namespace folio
