// The conversation history: every stored conversation, most recent first, titled from its first
// question; a search over titles and messages; open, rename, export as Markdown, and delete with
// a moment to undo. It reads the window's Database (the engine's thread records through its own
// connection); MainWindow does what the user asks for (open, export, the deletion itself).
#pragma once

#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QSet>
#include <QWidget>
#include <cstdint>

#include "core/store/store.h"

namespace folio::ui {

class HistoryPanel : public QWidget {
  Q_OBJECT

 public:
  explicit HistoryPanel(QWidget* parent = nullptr);

  void set_database(folio::store::Database* db) { db_ = db; }
  // Reads the list again (after an answer was recorded, a rename, a deletion).
  void refresh();
  void set_current(int64_t conversation_id);  // marks the open conversation

  // Deleting waits for undo: the row is hidden at once and the deletion happens when
  // commit_deletion() runs (the window's timer, another deletion, closing the window).
  void mark_deleted(int64_t id, const QString& title);
  void undo_deletion();
  int64_t pending_deletion() const { return pending_delete_; }
  // The conversation marked for deletion, deleted; 0 if none was.
  int64_t take_pending_deletion();

  // For tests.
  QLineEdit* search() const { return search_; }
  QListWidget* list() const { return list_; }
  QPushButton* undo_button() const { return undo_; }
  QList<int64_t> listed_ids() const;

 signals:
  void open_requested(qint64 id);
  void rename_requested(qint64 id, const QString& title);
  void export_requested(qint64 id);
  void delete_requested(qint64 id);
  void undo_requested();

 private:
  folio::store::Database* db_ = nullptr;
  QLineEdit* search_ = nullptr;
  QListWidget* list_ = nullptr;
  QWidget* undo_bar_ = nullptr;
  QLabel* undo_label_ = nullptr;
  QPushButton* undo_ = nullptr;
  QLabel* empty_ = nullptr;
  int64_t current_ = 0;
  int64_t pending_delete_ = 0;
};

}  // namespace folio::ui
