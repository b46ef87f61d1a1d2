#include "ui/fit_dialog.h"

#include <QDialogButtonBox>
#include <QEvent>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLocale>
#include <QPushButton>
#include <QSignalBlocker>
#include <QVBoxLayout>
#include <algorithm>
#include <map>

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

int64_t FitQuestion::room_for(int index) const {
  int64_t others = 0;
  for (int i = 0; i < tokens.size(); ++i)
    if (i != index) others += tokens[i];
  return room() - others - kLayoutMargin;
}

QVector<FitPart> FitQuestion::parts_of(const folio::docs::Document& doc, int64_t doc_tokens, bool* by_page) {
  using folio::docs::DocumentKind;
  *by_page = doc.kind == DocumentKind::Pdf;
  QVector<FitPart> parts;
  QVector<int64_t> bytes;
  if (doc.kind == DocumentKind::Pdf) {
    const int pages = std::max(doc.page_count, static_cast<int>(doc.page_labels.size()));
    if (pages < 2) return {};
    bytes.fill(0, pages);
    for (int i = 0; i < pages; ++i) parts.push_back({"p. " + folio::docs::citation_label(doc, i), 0});
    for (const auto& s : doc.sections)
      if (s.page_index >= 0 && s.page_index < pages) bytes[s.page_index] += s.text.size();
  } else {
    if (doc.files.size() < 2) return {};
    std::map<QString, int> index;
    for (const auto& f : doc.files) {
      index[f.path] = static_cast<int>(parts.size());
      parts.push_back({f.path, 0});
    }
    bytes.fill(0, parts.size());
    for (const auto& s : doc.sections)
      if (auto it = index.find(s.file); it != index.end()) bytes[it->second] += s.text.size();
  }
  int64_t total = 0;
  for (int64_t b : bytes) total += b;
  for (int i = 0; i < parts.size(); ++i) parts[i].tokens = total <= 0 ? 0 : (doc_tokens * bytes[i] + total - 1) / total;
  return parts;
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

  // Some pages of a PDF or some files of a folder (documents with more than one part only).
  part_doc_ = new QComboBox(this);
  part_doc_->setObjectName("fitPartDocument");
  for (int i = 0; i < q_.titles.size(); ++i)
    if (i < q_.parts.size() && q_.parts[i].size() > 1) part_doc_->addItem(q_.titles[i], i);
  part_ = new QRadioButton(tr("Keep some pages of a PDF or some files of a folder:"), this);
  part_->setObjectName("fitPart");
  layout->addWidget(part_);
  auto* part_box = new QVBoxLayout();
  part_box->setContentsMargins(24, 0, 0, 0);
  part_box->addWidget(part_doc_);
  pages_ = new QWidget(this);
  auto* pages = pages_;
  auto* pages_row = new QHBoxLayout(pages);
  pages_row->setContentsMargins(0, 0, 0, 0);
  first_page_ = new QSpinBox(pages);
  first_page_->setObjectName("fitFirstPage");
  last_page_ = new QSpinBox(pages);
  last_page_->setObjectName("fitLastPage");
  pages_row->addWidget(new QLabel(tr("pages"), pages));
  pages_row->addWidget(first_page_);
  pages_row->addWidget(new QLabel(tr("to"), pages));
  pages_row->addWidget(last_page_);
  pages_row->addStretch(1);
  part_box->addWidget(pages);
  files_ = new QListWidget(this);
  files_->setObjectName("fitFiles");
  files_->setMaximumHeight(160);
  part_box->addWidget(files_);
  layout->addLayout(part_box);
  if (part_doc_->count() == 0) {
    part_->setVisible(false);
    part_doc_->setVisible(false);
    pages_->setVisible(false);
    files_->setVisible(false);
  }

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
  if (part_doc_->count() > 0) show_parts_of(part_doc_->currentData().toInt());
  connect(part_doc_, &QComboBox::currentIndexChanged, this, [this] {
    show_parts_of(part_doc_->currentData().toInt());
    update_state();
  });
  connect(first_page_, &QSpinBox::valueChanged, this, [this](int v) {
    if (last_page_->value() < v) last_page_->setValue(v);
    update_state();
  });
  connect(last_page_, &QSpinBox::valueChanged, this, [this](int v) {
    if (first_page_->value() > v) first_page_->setValue(v);
    update_state();
  });
  connect(files_, &QListWidget::itemChanged, this, &FitDialog::update_state);
  connect(part_, &QRadioButton::toggled, this, &FitDialog::update_state);
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

void FitDialog::show_parts_of(int index) {
  if (index < 0 || index >= q_.parts.size()) return;
  const QVector<FitPart>& parts = q_.parts[index];
  const bool by_page = index < q_.parts_by_page.size() && q_.parts_by_page[index];
  const int64_t room = q_.room_for(index);
  // Proposed: from the start, as many parts as fit (at least the first).
  int fit_count = 0;
  int64_t used = 0;
  while (fit_count < parts.size() && used + parts[fit_count].tokens <= room) used += parts[fit_count++].tokens;
  fit_count = std::max(fit_count, 1);
  QSignalBlocker b1(first_page_), b2(last_page_), b3(files_);
  if (by_page) {
    pages_->setVisible(true);
    files_->setVisible(false);
    const int n = static_cast<int>(parts.size());
    first_page_->setRange(1, n);
    last_page_->setRange(1, n);
    first_page_->setValue(1);
    last_page_->setValue(fit_count);
    last_page_->setSuffix(tr(" of %1").arg(n));
  } else {
    pages_->setVisible(false);
    files_->setVisible(true);
    files_->clear();
    for (int i = 0; i < parts.size(); ++i) {
      auto* item = new QListWidgetItem(tr("%1 (about %2 tokens)").arg(parts[i].label, count(parts[i].tokens)), files_);
      item->setData(Qt::UserRole, parts[i].label);
      item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
      item->setCheckState(i < fit_count ? Qt::Checked : Qt::Unchecked);
    }
  }
}

folio::docs::PartSelection FitDialog::part_selection(int64_t* tokens) const {
  folio::docs::PartSelection sel;
  *tokens = 0;
  const int index = part_doc_->currentData().toInt();
  if (part_doc_->count() == 0 || index < 0 || index >= q_.parts.size()) return sel;
  const QVector<FitPart>& parts = q_.parts[index];
  if (files_->isHidden()) {
    sel.first_page = first_page_->value() - 1;
    sel.last_page = last_page_->value() - 1;
    for (int i = sel.first_page; i <= sel.last_page && i < parts.size(); ++i) *tokens += parts[i].tokens;
  } else {
    for (int i = 0; i < files_->count(); ++i)
      if (files_->item(i)->checkState() == Qt::Checked) {
        sel.files << files_->item(i)->data(Qt::UserRole).toString();
        if (i < parts.size()) *tokens += parts[i].tokens;
      }
  }
  return sel;
}

FitChoice FitDialog::choice() const {
  FitChoice c;
  if (relevant_->isChecked()) {
    c.kind = FitChoice::Kind::Relevant;
  } else if (part_->isChecked()) {
    c.kind = FitChoice::Kind::Part;
    c.part_index = part_doc_->currentData().toInt();
    int64_t tokens = 0;
    c.selection = part_selection(&tokens);
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
  const bool parting = part_->isChecked();
  part_doc_->setEnabled(parting);
  pages_->setEnabled(parting);
  files_->setEnabled(parting);
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
  } else if (parting) {
    int64_t tokens = 0;
    const folio::docs::PartSelection sel = part_selection(&tokens);
    const int index = part_doc_->currentData().toInt();
    const int64_t room = q_.room_for(index);
    const QString what = sel.first_page >= 0     ? (sel.first_page == sel.last_page
                                                        ? tr("Page %1").arg(sel.first_page + 1)
                                                        : tr("Pages %1-%2").arg(sel.first_page + 1).arg(sel.last_page + 1))
                         : sel.files.size() == 1 ? tr("1 file")
                                                 : tr("%1 files").arg(sel.files.size());
    const bool chosen = sel.first_page >= 0 || !sel.files.isEmpty();
    fits = chosen && tokens <= room;
    if (!chosen)
      verdict_->setText(tr("<span style='color:#b00020'>Choose at least one file.</span>"));
    else if (room <= 0)
      verdict_->setText(
          tr("<span style='color:#b00020'>The other documents alone fill the context; leave some "
             "out instead.</span>"));
    else
      verdict_->setText(
          fits ? tr("Fits: %1 of %2, about %3 tokens, beside the other documents (room for %4). The prompt will say "
                    "what is left out.")
                     .arg(what, part_doc_->currentText(), count(tokens), count(room))
               : tr("<span style='color:#b00020'>%1 of %2 need about %3 tokens, %4 more than the room of %5.</span>")
                     .arg(what, part_doc_->currentText(), count(tokens), count(tokens - room), count(room)));
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
