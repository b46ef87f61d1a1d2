// Built-in chat formats: how a conversation becomes the text a model was trained on. The text
// holds special markers (e.g. "<|im_start|>") that the tokenizer turns into their ids when it
// encodes with parse_special.
//
// Each format renders exactly the string the model's own Jinja chat template renders (as Hugging
// Face transformers runs it) for system/user/assistant messages; tests/fixtures/chat holds those
// strings and says where each format comes from. Where the template writes BOS as text ("<s>",
// "<|begin_of_text|>") it is in the rendered text and chat_format_adds_bos() is false.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace folio {

enum class ChatFormatKind {
  Plain,    // no template: system text, a blank line, the user text (base models, stories260K)
  ChatML,   // plain ChatML, no default system message (llama.cpp's "chatml")
  Llama2,   // Llama 2 chat: [INST] blocks, system folded into the first one as <<SYS>>
  Llama3,   // Llama 3.1 Instruct: system header with "Cutting Knowledge Date"/"Today Date" lines
  Mistral,  // Mistral 7B Instruct v0.1/v0.2: [INST] blocks, system text before the first user text
  Phi3,     // Phi-3/3.5 instruct
  Qwen2,    // Qwen2/2.5 Instruct: ChatML, "You are Qwen, created by Alibaba Cloud..." when no system
  SmolLM2,  // SmolLM2 Instruct: ChatML, "You are a helpful AI assistant named SmolLM..." when no system
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Every kind, in declaration order.
const std::vector<ChatFormatKind>& chat_format_kinds();

const char* chat_format_name(ChatFormatKind kind);
// "plain", "chatml", "llama2", "llama3", "mistral", "phi3", "qwen2", "smollm2".
std::optional<ChatFormatKind> chat_format_from_name(std::string_view name);

// The built-in format that renders like this Jinja chat template (a GGUF's tokenizer.chat_template
// or a tokenizer_config.json's chat_template), judged by its markers and default system prompt;
// nullopt when none does.
std::optional<ChatFormatKind> chat_format_from_template(std::string_view jinja);

// Renders messages; with add_generation_prompt the text ends where the assistant's reply begins.
std::string render_chat(ChatFormatKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt);

// Whether the tokenizer should prepend BOS (false where the template writes it as text, and for
// models without BOS: Qwen2, SmolLM2, ChatML).
bool chat_format_adds_bos(ChatFormatKind kind);

// The marker texts that end an assistant turn in this format (besides the model's EOS).
std::vector<std::string> chat_end_markers(ChatFormatKind kind);

}  // namespace folio
