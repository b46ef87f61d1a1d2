// Turning a question (and documents) into prompt tokens in the model's chat format.
#pragma once

#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/tokenizer/chat_format.h"

namespace folio {

// The format a model was trained with, judged from its tokenizer's markers; Plain when none.
ChatFormatKind detect_chat_format(const Engine& engine);

// Token ids of the rendered conversation, ending where the assistant's reply starts.
std::vector<int32_t> encode_chat(const Engine& engine, ChatFormatKind kind, const std::vector<ChatMessage>& messages);

// Ids of the format's end-of-turn markers that exist in the vocabulary.
std::vector<int32_t> chat_stop_tokens(const Engine& engine, ChatFormatKind kind);

}  // namespace folio
