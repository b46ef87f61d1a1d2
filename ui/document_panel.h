// The document panel: the documents of the conversation with their token counts, a gauge of the
// tokens they use out of the session's context, and add (dialog or drag and drop) / remove.
// It holds the list of documents the UI knows; MainWindow reads them and fills in what the
// loaders and the engine find out.
#pragma once

#include <QLabel>
#include <QListWidget>
#include <QProgressBar>
#include <QPushButton>
#include <QWidget>

class QMimeData;
#include <cstdint>
#include <vector>

#include "core/docs/document.h"
#include "core/docs/token_budget.h"

namespace folio::ui {

struct DocumentEntry {
  uint64_t key = 0;
  QString path;
  enum class State { Reading, Counting, Ready, Failed } state = State::Reading;
  folio::docs::Document doc;
  int64_t tokens = -1;                   // of the whole document as laid out in the prompt; -1 = not counted
  int64_t keep_tokens = 0;               // > 0: the user chose to keep only the first keep_tokens tokens
  folio::docs::PartSelection selection;  // not empty: the user chose to keep only these pages or files
  int64_t selection_tokens = 0;          // ... about this many tokens (the fit dialog's estimate)
  QString error;                         // when Failed: what went wrong and what to do
  QString count_note;                    // why the count is missing (e.g. no model loaded)
  QString used;                          // what of it the last question used when packed ("pages 1-3 of 40"); "" = all

  // Tokens the document takes in the prompt (the kept part when cut); 0 when unknown.
  int64_t prompt_tokens() const;
};

class DocumentPanel : public QWidget {
  Q_OBJECT

 public:
  explicit DocumentPanel(QWidget* parent = nullptr);

  uint64_t add_reading(const QString& path);
  void set_loaded(uint64_t key, const folio::docs::Document& doc);
  void set_tokens(uint64_t key, int64_t tokens);
  void set_count_note(uint64_t key, const QString& note);
  void set_failed(uint64_t key, const QString& message);
  void set_reading(uint64_t key);  // read again (e.g. with a PDF's password)
  void set_keep_tokens(uint64_t key, int64_t keep_tokens);
  void set_selection(uint64_t key, const folio::docs::PartSelection& selection, int64_t estimated_tokens);
  // What of the document the last question used when the documents were packed ("" = all of it).
  void set_used(uint64_t key, const QString& used);
  void remove(uint64_t key);
  void clear();

  const std::vector<DocumentEntry>& entries() const { return entries_; }
  const DocumentEntry* entry(uint64_t key) const;
  bool busy() const;  // some document is being read or counted

  // The gauge: documents plus the rest of the conversation out of the session's context.
  void set_context(int64_t context_tokens, int64_t reserve_tokens);
  void set_conversation_tokens(int64_t tokens);
  int64_t used_tokens() const;
  int64_t context_tokens() const { return context_; }
  // What a drop does: adds the local files and folders of `mime` (dropEvent calls this).
  bool accept_drop(const QMimeData* mime);

  // Asks (remove_requested) to remove the selected rows, or every row that failed to read.
  void remove_selected();
  void remove_failed();
  int failed_count() const;
  QPushButton* remove_failed_button() const { return remove_failed_button_; }

  QProgressBar* gauge() const { return gauge_; }
  QListWidget* list() const { return list_; }

 signals:
  void add_files_requested();
  void add_folder_requested();
  void paths_dropped(const QStringList& paths);
  void remove_requested(quint64 key);
  void use_whole_requested(quint64 key);  // undo "keep only the first N tokens" or "only these pages/files"
  void entries_changed();

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  DocumentEntry* find(uint64_t key);
  void refresh();

  std::vector<DocumentEntry> entries_;
  uint64_t next_key_ = 1;
  int64_t context_ = 0;
  int64_t reserve_ = 0;
  int64_t conversation_tokens_ = 0;
  QListWidget* list_ = nullptr;
  QProgressBar* gauge_ = nullptr;
  QLabel* gauge_label_ = nullptr;
  QPushButton* remove_button_ = nullptr;
  QPushButton* remove_failed_button_ = nullptr;
};

}  // namespace folio::ui
