// When the documents do not fit the context, the user chooses: fill the context with the parts most
// relevant to each question (the first choice: in order, with markers for what is left out), leave
// documents out, or keep only the first N tokens of one (the prompt and the document panel then say
// so). Folio never cuts without asking.
#pragma once

#include <QButtonGroup>
#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QLabel>
#include <QRadioButton>
#include <QSpinBox>
#include <QVector>
#include <optional>

namespace folio::ui {

struct FitQuestion {
  int64_t context_tokens = 0;
  int64_t reserve_tokens = 0;  // kept free for the answer
  int64_t fixed_tokens = 0;    // template, conversation and question
  QStringList titles;          // the documents, in prompt order
  QVector<int64_t> tokens;     // each one's tokens, whole

  // Tokens left for documents.
  int64_t room() const { return context_tokens - reserve_tokens - fixed_tokens; }
  // The share of the documents' tokens that fits (0..1).
  double share_that_fits() const;
  // The most of document `index` that fits beside the others (0 if nothing does).
  int64_t max_keep(int index) const;
};

struct FitChoice {
  // Relevant: each question gets the parts of the documents most relevant to it (core/chat packing).
  enum class Kind { Relevant, Drop, Truncate } kind = Kind::Drop;
  QVector<int> drop;        // Drop: indices of the documents to leave out
  int truncate_index = -1;  // Truncate: which document
  int64_t keep_tokens = 0;  // Truncate: how many of its first tokens to keep
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

  FitQuestion q_;
  QRadioButton* relevant_ = nullptr;
  QRadioButton* drop_ = nullptr;
  QRadioButton* truncate_ = nullptr;
  QVector<QCheckBox*> keep_boxes_;
  QComboBox* which_ = nullptr;
  QSpinBox* keep_ = nullptr;
  QLabel* verdict_ = nullptr;
  QPushButton* ok_ = nullptr;
};

}  // namespace folio::ui
