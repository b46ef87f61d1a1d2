// When the documents do not fit the context, the user chooses: fill the context with the parts most
// relevant to each question (the first choice: in order, with markers for what is left out), leave
// documents out, keep a range of a PDF's pages or some files of a folder, or keep only the first N
// tokens of one (the prompt and the document panel then say so). Folio never cuts without asking.
#pragma once

#include <QButtonGroup>
#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QLabel>
#include <QListWidget>
#include <QRadioButton>
#include <QSpinBox>
#include <QVector>
#include <optional>

#include "core/docs/document.h"
#include "core/docs/token_budget.h"

namespace folio::ui {

// A page of a PDF or a file of a folder, as the fit dialog offers it: its label ("p. 12", or the
// file's path) and its share of the document's tokens (estimated from its share of the text).
struct FitPart {
  QString label;
  int64_t tokens = 0;
};

struct FitQuestion {
  int64_t context_tokens = 0;
  int64_t reserve_tokens = 0;  // kept free for the answer
  int64_t fixed_tokens = 0;    // template, conversation and question
  QStringList titles;          // the documents, in prompt order
  QVector<int64_t> tokens;     // each one's tokens, whole
  // Per document: its pages (a PDF, by page index) or files (a folder), to keep some of them; empty
  // for a document with one part. parts_by_page[i]: document i's parts are pages.
  QVector<QVector<FitPart>> parts;
  QVector<bool> parts_by_page;

  // Tokens left for documents.
  int64_t room() const { return context_tokens - reserve_tokens - fixed_tokens; }
  // The share of the documents' tokens that fits (0..1).
  double share_that_fits() const;
  // The most of document `index` that fits beside the others (0 if nothing does).
  int64_t max_keep(int index) const;
  // Room for document `index` beside the others whole (may be <= 0).
  int64_t room_for(int index) const;

  // Document `doc` of `doc_tokens` tokens as parts (pages of a PDF, files of a folder; empty when it
  // has only one), each part's tokens estimated from its share of the document's text.
  static QVector<FitPart> parts_of(const folio::docs::Document& doc, int64_t doc_tokens, bool* by_page);
};

struct FitChoice {
  // Relevant: each question gets the parts of the documents most relevant to it (core/chat packing).
  // Part: keep only some pages or files of one document.
  enum class Kind { Relevant, Drop, Truncate, Part } kind = Kind::Drop;
  QVector<int> drop;                     // Drop: indices of the documents to leave out
  int truncate_index = -1;               // Truncate: which document
  int64_t keep_tokens = 0;               // Truncate: how many of its first tokens to keep
  int part_index = -1;                   // Part: which document
  folio::docs::PartSelection selection;  // Part: its pages or files to keep
};

class FitDialog : public QDialog {
  Q_OBJECT

 public:
  explicit FitDialog(const FitQuestion& question, QWidget* parent = nullptr);
  FitChoice choice() const;

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void update_state();
  void show_parts_of(int index);
  // Part: the selection made in the dialog and its estimated tokens.
  folio::docs::PartSelection part_selection(int64_t* tokens) const;

  FitQuestion q_;
  QRadioButton* relevant_ = nullptr;
  QRadioButton* drop_ = nullptr;
  QRadioButton* truncate_ = nullptr;
  QVector<QCheckBox*> keep_boxes_;
  QComboBox* which_ = nullptr;
  QSpinBox* keep_ = nullptr;
  QRadioButton* part_ = nullptr;
  QComboBox* part_doc_ = nullptr;   // the documents with parts (item data: the document's index)
  QWidget* pages_ = nullptr;        // the page range row (a PDF), or files_ (a folder): one of them shown
  QSpinBox* first_page_ = nullptr;  // 1-based page numbers in the file
  QSpinBox* last_page_ = nullptr;
  QListWidget* files_ = nullptr;
  QLabel* verdict_ = nullptr;
  QPushButton* ok_ = nullptr;
};

}  // namespace folio::ui
