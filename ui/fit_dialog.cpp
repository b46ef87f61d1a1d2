#include "ui/fit_dialog.h"

#include <QDialogButtonBox>
#include <QEvent>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLocale>
#include <QPushButton>
#include <QVBoxLayout>
#include <algorithm>

namespace folio::ui {

namespace {
QString count(int64_t n) {
  return QLocale().toString(qint64(n));
}
// keep_tokens counts the laid-out text (heading and notice included); this covers separators.
constexpr int64_t kLayoutMargin = 8;
}  // namespace

double FitQuestion::share_that_fits() const {
  int64_t total = 0;
  for (int64_t t : tokens) total += t;
  return total <= 0 ? 1.0 : std::clamp(static_cast<double>(room()) / static_cast<double>(total), 0.0, 1.0);
}

int64_t FitQuestion::max_keep(int index) const {
  int64_t others = 0;
  for (int i = 0; i < tokens.size(); ++i)
    if (i != index) others += tokens[i];
  const int64_t left = room() - others - kLayoutMargin;
  return std::max<int64_t>(0, std::min(left, index >= 0 && index < tokens.size() ? tokens[index] - 1 : 0));
}

FitDialog::FitDialog(const FitQuestion& question, QWidget* parent) : QDialog(parent), q_(question) {
  setWindowTitle(tr("The documents do not fit"));
  setObjectName("fitDialog");
  auto* layout = new QVBoxLayout(this);
  int64_t total = 0;
  for (int64_t t : q_.tokens) total += t;
  auto* intro = new QLabel(
      tr("The documents need %1 tokens, but the context holds %2 tokens, of which %3 go to the question and "
         "the conversation and %4 stay free for the answer. Choose what Folio should leave out; nothing is cut "
         "without your choice. (A larger context in Settings also helps, if the model supports it.)")
          .arg(count(total), count(q_.context_tokens), count(q_.fixed_tokens), count(q_.reserve_tokens)),
      this);
  intro->setWordWrap(true);
  layout->addWidget(intro);

  const double share = q_.share_that_fits();
  relevant_ = new QRadioButton(this);
  relevant_->setObjectName("fitRelevant");
  auto* relevant_text =
      new QLabel(tr("<b>Fill the context with the parts most relevant to each question</b> (recommended): about "
                    "%1 of the documents fit; each question gets the pages or files that match it best, in their "
                    "order, with markers for what is left out. The document panel shows what each question used.")
                     .arg(share >= 0.995 ? tr("all")
                          : share < 0.01 ? tr("less than 1%")
                                         : QString("%1%").arg(qRound(share * 100))),
                 this);
  relevant_text->setWordWrap(true);
  relevant_text->setBuddy(relevant_);
  relevant_text->setObjectName("fitRelevantText");
  relevant_text->installEventFilter(this);  // a click on the text chooses it, as on a radio button's own text
  auto* relevant_row = new QHBoxLayout();
  relevant_row->addWidget(relevant_, 0, Qt::AlignTop);
  relevant_row->addWidget(relevant_text, 1);
  layout->addLayout(relevant_row);

  drop_ = new QRadioButton(tr("Leave out documents (uncheck them):"), this);
  layout->addWidget(drop_);
  auto* list = new QVBoxLayout();
  list->setContentsMargins(24, 0, 0, 0);
  for (int i = 0; i < q_.titles.size(); ++i) {
    auto* box = new QCheckBox(tr("%1 (%2 tokens)").arg(q_.titles[i], count(q_.tokens[i])), this);
    box->setChecked(true);
    keep_boxes_ << box;
    list->addWidget(box);
    connect(box, &QCheckBox::toggled, this, &FitDialog::update_state);
  }
  layout->addLayout(list);

  truncate_ = new QRadioButton(tr("Keep only the beginning of one document:"), this);
  layout->addWidget(truncate_);
  auto* row = new QHBoxLayout();
  row->setContentsMargins(24, 0, 0, 0);
  which_ = new QComboBox(this);
  for (int i = 0; i < q_.titles.size(); ++i) which_->addItem(q_.titles[i]);
  keep_ = new QSpinBox(this);
  keep_->setSuffix(tr(" tokens"));
  row->addWidget(new QLabel(tr("the first"), this));
  row->addWidget(keep_);
  row->addWidget(new QLabel(tr("of"), this));
  row->addWidget(which_, 1);
  layout->addLayout(row);

  verdict_ = new QLabel(this);
  verdict_->setWordWrap(true);
  layout->addWidget(verdict_);

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  ok_ = buttons->button(QDialogButtonBox::Ok);
  ok_->setText(tr("Ask with this choice"));
  layout->addWidget(buttons);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);

  // Start from the largest document cut to what fits, which is what most people want.
  int largest = 0;
  for (int i = 1; i < q_.tokens.size(); ++i)
    if (q_.tokens[i] > q_.tokens[largest]) largest = i;
  which_->setCurrentIndex(largest);
  keep_->setRange(0, static_cast<int>(std::max<int64_t>(0, q_.max_keep(largest))));
  keep_->setValue(keep_->maximum());
  relevant_->setChecked(true);  // what most people want: the whole budget used on what matters
  connect(which_, &QComboBox::currentIndexChanged, this, [this](int i) {
    keep_->setRange(0, static_cast<int>(q_.max_keep(i)));
    keep_->setValue(keep_->maximum());
    update_state();
  });
  connect(keep_, &QSpinBox::valueChanged, this, &FitDialog::update_state);
  connect(drop_, &QRadioButton::toggled, this, &FitDialog::update_state);
  connect(truncate_, &QRadioButton::toggled, this, &FitDialog::update_state);
  connect(relevant_, &QRadioButton::toggled, this, &FitDialog::update_state);
  update_state();
}

bool FitDialog::eventFilter(QObject* watched, QEvent* event) {
  if (event->type() == QEvent::MouseButtonRelease && watched->objectName() == "fitRelevantText")
    relevant_->setChecked(true);
  return QDialog::eventFilter(watched, event);
}

FitChoice FitDialog::choice() const {
  FitChoice c;
  if (relevant_->isChecked()) {
    c.kind = FitChoice::Kind::Relevant;
  } else if (truncate_->isChecked()) {
    c.kind = FitChoice::Kind::Truncate;
    c.truncate_index = which_->currentIndex();
    c.keep_tokens = keep_->value();
  } else {
    c.kind = FitChoice::Kind::Drop;
    for (int i = 0; i < keep_boxes_.size(); ++i)
      if (!keep_boxes_[i]->isChecked()) c.drop << i;
  }
  return c;
}

void FitDialog::update_state() {
  const bool dropping = drop_->isChecked();
  const bool truncating = truncate_->isChecked();
  for (auto* b : keep_boxes_) b->setEnabled(dropping);
  which_->setEnabled(truncating);
  keep_->setEnabled(truncating);
  bool fits = false;
  if (relevant_->isChecked()) {
    fits = q_.room() > 0;
    verdict_->setText(tr("Folio packs %1 tokens of documents for each question; a follow-up that needs the same "
                         "parts keeps them, so their computed state is reused.")
                          .arg(count(q_.room())));
  } else if (dropping) {
    int64_t kept = 0;
    for (int i = 0; i < keep_boxes_.size(); ++i)
      if (keep_boxes_[i]->isChecked()) kept += q_.tokens[i];
    fits = kept <= q_.room();
    verdict_->setText(
        fits ? tr("Fits: %1 of %2 tokens for documents.").arg(count(kept), count(q_.room()))
             : tr("<span style='color:#b00020'>Still %1 tokens too many.</span>").arg(count(kept - q_.room())));
  } else {
    fits = keep_->value() > 0;
    verdict_->setText(fits ? tr("The prompt will say that only the first %1 tokens of %2 are included.")
                                 .arg(count(keep_->value()), which_->currentText())
                           : tr("<span style='color:#b00020'>Not even the beginning of this document fits beside "
                                "the others; leave documents out instead.</span>"));
  }
  ok_->setEnabled(fits);
}

}  // namespace folio::ui
