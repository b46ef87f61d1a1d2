#include "core/tokenizer/chat_format.h"

namespace folio {

const char* chat_format_name(ChatFormatKind kind) {
  switch (kind) {
    case ChatFormatKind::Plain: return "plain";
    case ChatFormatKind::ChatML: return "chatml";
    case ChatFormatKind::Llama2: return "llama2";
    case ChatFormatKind::Llama3: return "llama3";
    case ChatFormatKind::Mistral: return "mistral";
    case ChatFormatKind::Phi3: return "phi3";
  }
  return "?";
}

std::optional<ChatFormatKind> chat_format_from_name(std::string_view name) {
  for (auto k : {ChatFormatKind::Plain, ChatFormatKind::ChatML, ChatFormatKind::Llama2, ChatFormatKind::Llama3,
                 ChatFormatKind::Mistral, ChatFormatKind::Phi3})
    if (name == chat_format_name(k)) return k;
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
  }
  return {};
}

namespace {

std::string render_plain(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (const auto& m : messages) {
    if (!out.empty()) out += "\n\n";
    out += m.content;
  }
  return out;
}

// Llama 2 and Mistral share [INST] blocks; Llama 2 folds the system prompt into the first one.
std::string render_inst(const std::vector<ChatMessage>& messages, bool llama2) {
  std::string out;
  std::string system;
  bool first_user = true;
  for (const auto& m : messages) {
    if (m.role == "system") {
      system = m.content;
    } else if (m.role == "user") {
      std::string content = m.content;
      if (first_user && !system.empty())
        content = llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content : system + "\n\n" + content;
      if (llama2 || first_user) out += "<s>";
      out += "[INST] " + content + " [/INST]";
      first_user = false;
    } else if (m.role == "assistant") {
      out += (llama2 ? " " : "") + m.content + (llama2 ? " </s>" : "</s>");
    }
  }
  return out;
}

}  // namespace

std::string render_chat(ChatFormatKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  switch (kind) {
    case ChatFormatKind::Plain:
      out = render_plain(messages);
      if (add_generation_prompt) out += "\n";
      return out;
    case ChatFormatKind::ChatML:
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case ChatFormatKind::Llama3:
      out = "<|begin_of_text|>";
      for (const auto& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case ChatFormatKind::Phi3:
      for (const auto& m : messages) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      if (add_generation_prompt) out += "<|assistant|>\n";
      return out;
    case ChatFormatKind::Llama2:
      return render_inst(messages, true);
    case ChatFormatKind::Mistral:
      return render_inst(messages, false);
  }
  return out;
}

}  // namespace folio
