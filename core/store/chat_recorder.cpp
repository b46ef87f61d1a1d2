#include "core/store/chat_recorder.h"

namespace folio::store {

ChatRecorder::ChatRecorder(const QString& database_path) : db_(database_path) {}

void ChatRecorder::record_turn(const folio::chat::TurnRecord& turn) {
  const QString question = QString::fromStdString(turn.question);
  if (conversation_id_ == 0) {
    // The first question names the conversation in the list.
    QString title = question.left(60);
    if (question.size() > 60) title += "…";
    conversation_id_ = db_.create_conversation(title, model_).id;
  }
  if (turn.documents != nullptr) {
    for (size_t i = 0; i < turn.documents->size(); ++i) {
      const folio::chat::Document& d = (*turn.documents)[i];
      if (d.content_hash.empty()) continue;  // not read by core/docs: nothing identifies it
      DocumentInfo info;
      info.path = QString::fromStdString(d.path);
      info.title = QString::fromStdString(d.title);
      info.content_hash = QString::fromStdString(d.content_hash);
      info.kind = QString::fromLatin1(folio::chat::document_kind_name(d.kind));
      info.token_count = i < turn.document_tokens.size() ? turn.document_tokens[i] : 0;
      info.page_count = d.page_count;
      db_.attach_document(conversation_id_, db_.upsert_document(info).id);
    }
  }
  db_.append_message(conversation_id_, Role::User, question);
  if (!turn.answer.empty())
    db_.append_message(conversation_id_, Role::Assistant, QString::fromStdString(turn.answer), turn.metrics);
  if (!turn.cancelled && turn.metrics.decode_tokens > 0)
    db_.record_run(turn.metrics, model_, QString::fromStdString(turn.metrics.attention_mode),
                   turn.metrics.attention_density);
}

}  // namespace folio::store
