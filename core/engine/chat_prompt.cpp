#include "core/engine/chat_prompt.h"

namespace folio {

ChatFormatKind detect_chat_format(const Engine& engine) {
  // The model's own template says best which markers it uses.
  const std::string& tpl = engine.chat_template();
  if (!tpl.empty())
    if (auto kind = chat_format_from_template(tpl)) return *kind;
  if (!engine.has_tokenizer()) return ChatFormatKind::Plain;
  const Tokenizer& t = engine.tokenizer();
  if (t.piece_to_id("<|im_start|>")) return ChatFormatKind::ChatML;
  if (t.piece_to_id("<|eot_id|>")) return ChatFormatKind::Llama3;
  if (t.piece_to_id("<|assistant|>") && t.piece_to_id("<|end|>")) return ChatFormatKind::Phi3;
  return ChatFormatKind::Plain;
}

std::vector<int32_t> encode_chat(const Engine& engine, ChatFormatKind kind, const std::vector<ChatMessage>& messages) {
  const std::string text = render_chat(kind, messages, true);
  return engine.tokenizer().encode(text, chat_format_adds_bos(kind), /*parse_special=*/kind != ChatFormatKind::Plain);
}

std::vector<int32_t> chat_stop_tokens(const Engine& engine, ChatFormatKind kind) {
  std::vector<int32_t> ids;
  if (!engine.has_tokenizer()) return ids;
  for (const auto& marker : chat_end_markers(kind))
    if (auto id = engine.tokenizer().piece_to_id(marker)) ids.push_back(*id);
  return ids;
}

}  // namespace folio
