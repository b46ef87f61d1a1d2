#include "core/tokenizer/chat_format.h"

namespace folio {

namespace {

constexpr std::string_view kQwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
constexpr std::string_view kSmolLMDefaultSystem = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
// Llama 3.1's template: its knowledge cutoff, and the date it uses when date_string is not given.
constexpr std::string_view kLlama31SystemHeader = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";

bool contains(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

// Jinja's trim / Python's str.strip() for ASCII whitespace.
std::string trim(std::string_view s) {
  constexpr std::string_view ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

std::string render_plain(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) {
    if (!out.empty()) out += "\n\n";
    out += m.content;
  }
  if (add_generation_prompt) out += "\n";
  return out;
}

std::string chatml_turn(std::string_view role, std::string_view content) {
  std::string out = "<|im_start|>";
  out += role;
  out += '\n';
  out += content;
  out += "<|im_end|>\n";
  return out;
}

// ChatML; default_system (when not empty) is inserted as the templates of Qwen2.5 and SmolLM2 do
// it: Qwen2.5 whenever the first message is not a system message (its template fails on an empty
// conversation; here it still gets the default), SmolLM2 only when there is a first message and
// it is not a system message.
std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                          std::string_view default_system, bool default_even_when_empty) {
  std::string out;
  const bool first_is_system = !messages.empty() && messages.front().role == "system";
  if (!default_system.empty() && !first_is_system && (default_even_when_empty || !messages.empty()))
    out += chatml_turn("system", default_system);
  for (const auto& m : messages) out += chatml_turn(m.role, m.content);
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// Llama 3.1 Instruct: BOS as text, a system header that is always there (with the date lines,
// then the first message's system text), contents trimmed.
std::string render_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n";
  out += kLlama31SystemHeader;
  size_t first = 0;
  if (!messages.empty() && messages.front().role == "system") {
    out += trim(messages.front().content);
    first = 1;
  }
  out += "<|eot_id|>";
  for (size_t i = first; i < messages.size(); ++i) {
    out += "<|start_header_id|>";
    out += messages[i].role;
    out += "<|end_header_id|>\n\n";
    out += trim(messages[i].content);
    out += "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Phi-3.5-mini-instruct: empty system messages are left out; without a generation prompt the
// text ends with EOS.
std::string render_phi3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) {
    if ((m.role == "system" && !m.content.empty()) || m.role == "user" || m.role == "assistant")
      out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
  }
  out += add_generation_prompt ? "<|assistant|>\n" : "<|endoftext|>";
  return out;
}

// Llama 2 chat (Meta's chat_completion and the Hugging Face template): every user turn is
// "<s>[INST] ... [/INST]", every reply " ... </s>", contents stripped; a system message goes into
// the next user turn between <<SYS>> markers. Mistral v0.1/v0.2: "<s>" once, "[INST] ... [/INST]",
// the reply and "</s>" with no spaces; a system message goes before the next user text with a
// blank line (as mistral-common's v1 tokenizer does).
std::string render_inst(const std::vector<ChatMessage>& messages, bool llama2) {
  std::string out = llama2 ? "" : "<s>";
  std::string system;
  for (const auto& m : messages) {
    if (m.role == "system") {
      if (!system.empty()) system += "\n\n";
      system += m.content;
    } else if (m.role == "user") {
      std::string content = m.content;
      if (!system.empty()) {
        content = llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content : system + "\n\n" + content;
        system.clear();
      }
      out += llama2 ? "<s>[INST] " : "[INST] ";
      out += llama2 ? trim(content) : content;
      out += " [/INST]";
    } else if (m.role == "assistant") {
      if (llama2) out += ' ';
      out += llama2 ? trim(m.content) : m.content;
      out += llama2 ? " </s>" : "</s>";
    }
  }
  return out;
}

}  // namespace

const std::vector<ChatFormatKind>& chat_format_kinds() {
  static const std::vector<ChatFormatKind> kinds = {
      ChatFormatKind::Plain, ChatFormatKind::ChatML, ChatFormatKind::Llama2, ChatFormatKind::Llama3,
      ChatFormatKind::Mistral, ChatFormatKind::Phi3, ChatFormatKind::Qwen2, ChatFormatKind::SmolLM2};
  return kinds;
}

const char* chat_format_name(ChatFormatKind kind) {
  switch (kind) {
    case ChatFormatKind::Plain: return "plain";
    case ChatFormatKind::ChatML: return "chatml";
    case ChatFormatKind::Llama2: return "llama2";
    case ChatFormatKind::Llama3: return "llama3";
    case ChatFormatKind::Mistral: return "mistral";
    case ChatFormatKind::Phi3: return "phi3";
    case ChatFormatKind::Qwen2: return "qwen2";
    case ChatFormatKind::SmolLM2: return "smollm2";
  }
  return "?";
}

std::optional<ChatFormatKind> chat_format_from_name(std::string_view name) {
  for (auto k : chat_format_kinds())
    if (name == chat_format_name(k)) return k;
  return std::nullopt;
}

std::optional<ChatFormatKind> chat_format_from_template(std::string_view jinja) {
  if (contains(jinja, "<|im_start|>")) {
    if (contains(jinja, "You are Qwen")) return ChatFormatKind::Qwen2;
    if (contains(jinja, "named SmolLM")) return ChatFormatKind::SmolLM2;
    return ChatFormatKind::ChatML;
  }
  if (contains(jinja, "<|start_header_id|>")) return ChatFormatKind::Llama3;
  if (contains(jinja, "<|assistant|>") && contains(jinja, "<|end|>")) return ChatFormatKind::Phi3;
  if (contains(jinja, "<<SYS>>")) return ChatFormatKind::Llama2;
  if (contains(jinja, "[INST]")) return ChatFormatKind::Mistral;
  return std::nullopt;
}

bool chat_format_adds_bos(ChatFormatKind kind) {
  return kind == ChatFormatKind::Plain || kind == ChatFormatKind::Phi3;
}

std::vector<std::string> chat_end_markers(ChatFormatKind kind) {
  switch (kind) {
    case ChatFormatKind::Plain: return {};
    case ChatFormatKind::ChatML: return {"<|im_end|>"};
    case ChatFormatKind::Llama2: return {"</s>"};
    case ChatFormatKind::Llama3: return {"<|eot_id|>", "<|end_of_text|>"};
    case ChatFormatKind::Mistral: return {"</s>"};
    case ChatFormatKind::Phi3: return {"<|end|>", "<|endoftext|>"};
    case ChatFormatKind::Qwen2: return {"<|im_end|>", "<|endoftext|>"};
    case ChatFormatKind::SmolLM2: return {"<|im_end|>"};
  }
  return {};
}

std::string render_chat(ChatFormatKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  switch (kind) {
    case ChatFormatKind::Plain: return render_plain(messages, add_generation_prompt);
    case ChatFormatKind::ChatML: return render_chatml(messages, add_generation_prompt, {}, false);
    case ChatFormatKind::Qwen2: return render_chatml(messages, add_generation_prompt, kQwenDefaultSystem, true);
    case ChatFormatKind::SmolLM2: return render_chatml(messages, add_generation_prompt, kSmolLMDefaultSystem, false);
    case ChatFormatKind::Llama3: return render_llama3(messages, add_generation_prompt);
    case ChatFormatKind::Phi3: return render_phi3(messages, add_generation_prompt);
    case ChatFormatKind::Llama2: return render_inst(messages, true);
    case ChatFormatKind::Mistral: return render_inst(messages, false);
  }
  return {};
}

}  // namespace folio
