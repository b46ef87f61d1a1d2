// The store as the Conversation service's recorder: each answered turn becomes the conversation's
// messages (the answer with the engine's metrics), its documents are attached, and the run is
// kept for the performance charts. It opens its own connection, on the thread that records (the
// app's engine thread); the window reads the same file through its own Database.
#pragma once

#include <QString>
#include <cstdint>

#include "core/chat/conversation.h"
#include "core/store/store.h"

namespace folio::store {

class ChatRecorder : public folio::chat::Recorder {
 public:
  // Opens the database at path (see Database). Throws Error when it cannot.
  explicit ChatRecorder(const QString& database_path);

  // The model the next conversation is held with (its name in the store).
  void set_model(const QString& model) { model_ = model; }
  // The conversation the turns go to; 0 until the first turn is recorded.
  int64_t conversation_id() const { return conversation_id_; }
  Database& database() { return db_; }

  void record_turn(const folio::chat::TurnRecord& turn) override;
  void new_conversation() override { conversation_id_ = 0; }
  // The next turns go on in this stored conversation (reopened from the history).
  void continue_conversation(int64_t id) { conversation_id_ = id; }

 private:
  Database db_;
  QString model_;
  int64_t conversation_id_ = 0;
};

}  // namespace folio::store
