#include "ui/document_panel.h"

#include <QDragEnterEvent>
#include <algorithm>
#include <QDropEvent>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLocale>
#include <QMenu>
#include <QMimeData>
#include <QShortcut>
#include <QStyle>
#include <QVBoxLayout>

namespace folio::ui {

namespace {
QString count(int64_t n) {
  return QLocale().toString(qint64(n));
}

QString kind_text(const folio::docs::Document& d) {
  switch (d.kind) {
    case folio::docs::DocumentKind::Pdf:
      return QObject::tr("PDF, %n page(s)", "", d.page_count);
    case folio::docs::DocumentKind::SourceTree:
      return QObject::tr("folder, %n file(s)", "", d.page_count);
    case folio::docs::DocumentKind::Text:
      return QObject::tr("text");
  }
  return {};
}
}  // namespace

int64_t DocumentEntry::prompt_tokens() const {
  if (state != State::Ready || tokens < 0) return 0;
  const int64_t whole = selection.empty() ? tokens : std::min(selection_tokens, tokens);
  return keep_tokens > 0 ? std::min(keep_tokens, whole) : whole;
}

DocumentPanel::DocumentPanel(QWidget* parent) : QWidget(parent) {
  setAcceptDrops(true);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  auto* title = new QLabel(tr("<b>Documents</b>"), this);
  layout->addWidget(title);

  list_ = new QListWidget(this);
  list_->setObjectName("documentList");
  list_->setWordWrap(true);
  list_->setAlternatingRowColors(true);
  list_->setSelectionMode(QAbstractItemView::ExtendedSelection);
  list_->setToolTip(tr("Drop files or folders here"));
  layout->addWidget(list_, 1);

  // Two buttons (Add offers files or a folder): the panel stays narrow enough that the chat keeps
  // half of a 1024 px window.
  auto* buttons = new QHBoxLayout();
  auto* add = new QPushButton(style()->standardIcon(QStyle::SP_FileIcon), tr("Add…"), this);
  add->setObjectName("addDocument");
  auto* add_menu = new QMenu(add);
  QAction* add_files = add_menu->addAction(style()->standardIcon(QStyle::SP_FileIcon), tr("Add files…"));
  QAction* add_folder = add_menu->addAction(style()->standardIcon(QStyle::SP_DirIcon), tr("Add folder (source tree)…"));
  add->setMenu(add_menu);
  remove_button_ = new QPushButton(style()->standardIcon(QStyle::SP_TrashIcon), tr("Remove"), this);
  remove_button_->setObjectName("removeDocument");
  remove_button_->setEnabled(false);
  buttons->addWidget(add);
  buttons->addWidget(remove_button_);
  buttons->addStretch(1);
  layout->addLayout(buttons);
  // Shown while documents failed to read: they go in one click (or select several and Remove).
  remove_failed_button_ = new QPushButton(this);
  remove_failed_button_->setObjectName("removeFailedDocuments");
  remove_failed_button_->setVisible(false);
  layout->addWidget(remove_failed_button_);

  auto* gauge_title = new QLabel(tr("<b>Context</b>"), this);
  layout->addWidget(gauge_title);
  gauge_ = new QProgressBar(this);
  gauge_->setObjectName("contextGauge");
  gauge_->setTextVisible(true);
  layout->addWidget(gauge_);
  gauge_label_ = new QLabel(this);
  gauge_label_->setWordWrap(true);
  gauge_label_->setObjectName("contextGaugeLabel");
  layout->addWidget(gauge_label_);

  connect(add_files, &QAction::triggered, this, &DocumentPanel::add_files_requested);
  connect(add_folder, &QAction::triggered, this, &DocumentPanel::add_folder_requested);
  connect(list_, &QListWidget::itemSelectionChanged, this,
          [this] { remove_button_->setEnabled(!list_->selectedItems().isEmpty()); });
  list_->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(list_, &QListWidget::customContextMenuRequested, this, [this](const QPoint& at) {
    QListWidgetItem* item = list_->itemAt(at);
    if (item == nullptr) return;
    const uint64_t key = item->data(Qt::UserRole).toULongLong();
    const DocumentEntry* e = entry(key);
    if (e == nullptr) return;
    QMenu menu(this);
    if (e->keep_tokens > 0 || !e->selection.empty())
      menu.addAction(tr("Use the whole document"), this, [this, key] { emit use_whole_requested(key); });
    const int selected = static_cast<int>(list_->selectedItems().size());
    if (item->isSelected() && selected > 1)
      menu.addAction(tr("Remove the %1 selected").arg(selected), this, &DocumentPanel::remove_selected);
    else
      menu.addAction(tr("Remove"), this, [this, key] { emit remove_requested(key); });
    if (failed_count() > 0)
      menu.addAction(tr("Remove every document that failed (%1)").arg(failed_count()), this,
                     &DocumentPanel::remove_failed);
    menu.exec(list_->viewport()->mapToGlobal(at));
  });
  connect(remove_button_, &QPushButton::clicked, this, &DocumentPanel::remove_selected);
  connect(remove_failed_button_, &QPushButton::clicked, this, &DocumentPanel::remove_failed);
  auto* del = new QShortcut(QKeySequence::Delete, list_, nullptr, nullptr, Qt::WidgetShortcut);
  connect(del, &QShortcut::activated, this, &DocumentPanel::remove_selected);
  refresh();
}

int DocumentPanel::failed_count() const {
  return static_cast<int>(std::count_if(entries_.begin(), entries_.end(),
                                        [](const DocumentEntry& e) { return e.state == DocumentEntry::State::Failed; }));
}

void DocumentPanel::remove_selected() {
  std::vector<uint64_t> keys;
  for (auto* item : list_->selectedItems()) keys.push_back(item->data(Qt::UserRole).toULongLong());
  for (uint64_t key : keys) emit remove_requested(key);
}

void DocumentPanel::remove_failed() {
  std::vector<uint64_t> keys;
  for (const auto& e : entries_)
    if (e.state == DocumentEntry::State::Failed) keys.push_back(e.key);
  for (uint64_t key : keys) emit remove_requested(key);
}

DocumentEntry* DocumentPanel::find(uint64_t key) {
  for (auto& e : entries_)
    if (e.key == key) return &e;
  return nullptr;
}

const DocumentEntry* DocumentPanel::entry(uint64_t key) const {
  for (const auto& e : entries_)
    if (e.key == key) return &e;
  return nullptr;
}

uint64_t DocumentPanel::add_reading(const QString& path) {
  DocumentEntry e;
  e.key = next_key_++;
  e.path = path;
  e.doc.title = QFileInfo(path).fileName();
  entries_.push_back(e);
  refresh();
  return e.key;
}

void DocumentPanel::set_loaded(uint64_t key, const folio::docs::Document& doc) {
  if (auto* e = find(key)) {
    e->doc = doc;
    e->state = DocumentEntry::State::Counting;
    refresh();
  }
}

void DocumentPanel::set_tokens(uint64_t key, int64_t tokens) {
  if (auto* e = find(key)) {
    e->tokens = tokens;
    e->count_note.clear();
    if (e->state == DocumentEntry::State::Counting) e->state = DocumentEntry::State::Ready;
    refresh();
  }
}

void DocumentPanel::set_count_note(uint64_t key, const QString& note) {
  if (auto* e = find(key)) {
    e->count_note = note;
    refresh();
  }
}

void DocumentPanel::set_failed(uint64_t key, const QString& message) {
  if (auto* e = find(key)) {
    e->state = DocumentEntry::State::Failed;
    e->error = message;
    refresh();
  }
}

void DocumentPanel::set_reading(uint64_t key) {
  if (auto* e = find(key)) {
    e->state = DocumentEntry::State::Reading;
    e->error.clear();
    refresh();
  }
}

void DocumentPanel::set_keep_tokens(uint64_t key, int64_t keep_tokens) {
  if (auto* e = find(key)) {
    e->keep_tokens = keep_tokens;
    refresh();
  }
}

void DocumentPanel::set_selection(uint64_t key, const folio::docs::PartSelection& selection, int64_t estimated_tokens) {
  if (auto* e = find(key)) {
    e->selection = selection;
    e->selection_tokens = estimated_tokens;
    refresh();
  }
}

void DocumentPanel::remove(uint64_t key) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [key](const auto& e) { return e.key == key; }),
                 entries_.end());
  refresh();
}

void DocumentPanel::clear() {
  entries_.clear();
  refresh();
}

bool DocumentPanel::busy() const {
  for (const auto& e : entries_)
    if (e.state == DocumentEntry::State::Reading || e.state == DocumentEntry::State::Counting) return true;
  return false;
}

void DocumentPanel::set_context(int64_t context_tokens, int64_t reserve_tokens) {
  context_ = context_tokens;
  reserve_ = reserve_tokens;
  refresh();
}

void DocumentPanel::set_conversation_tokens(int64_t tokens) {
  conversation_tokens_ = std::max<int64_t>(0, tokens);
  refresh();
}

int64_t DocumentPanel::used_tokens() const {
  int64_t used = conversation_tokens_;
  for (const auto& e : entries_) used += e.prompt_tokens();
  return used;
}

void DocumentPanel::set_used(uint64_t key, const QString& used) {
  DocumentEntry* e = find(key);
  if (e == nullptr || e->used == used) return;
  e->used = used;
  refresh();
}

void DocumentPanel::refresh() {
  const QSet<uint64_t> selected = [this] {
    QSet<uint64_t> s;
    for (auto* item : list_->selectedItems()) s.insert(item->data(Qt::UserRole).toULongLong());
    return s;
  }();
  list_->clear();
  for (const auto& e : entries_) {
    QString text = e.doc.title.isEmpty() ? QFileInfo(e.path).fileName() : e.doc.title;
    QString detail;
    QColor color;
    switch (e.state) {
      case DocumentEntry::State::Reading:
        detail = tr("reading…");
        break;
      case DocumentEntry::State::Counting:
        detail = e.count_note.isEmpty() ? tr("counting tokens…") : tr("tokens unknown: %1").arg(e.count_note);
        break;
      case DocumentEntry::State::Ready:
        detail = tr("%1 tokens · %2").arg(count(e.tokens), kind_text(e.doc));
        if (e.keep_tokens > 0 && e.keep_tokens < e.tokens) {
          detail += "\n" + tr("⚠ only the first %1 tokens are used (your choice)").arg(count(e.keep_tokens));
          color = QColor(0xB3, 0x5C, 0x00);
        }
        if (!e.selection.empty()) {
          detail += "\n" + tr("⚠ only %1 is used (your choice)").arg(e.selection.describe(e.doc));
          color = QColor(0xB3, 0x5C, 0x00);
        }
        if (!e.used.isEmpty()) detail += "\n" + tr("the last question used %1").arg(e.used);
        break;
      case DocumentEntry::State::Failed:
        detail = e.error;
        color = QColor(0xB0, 0x00, 0x20);
        break;
    }
    for (const QString& n : e.doc.notices) detail += "\n" + n;
    if (!e.doc.skipped.isEmpty()) detail += "\n" + tr("%n file(s) left out", "", int(e.doc.skipped.size()));
    auto* item = new QListWidgetItem(text + "\n" + detail, list_);
    item->setData(Qt::UserRole, QVariant::fromValue<qulonglong>(e.key));
    item->setToolTip(e.path + (e.error.isEmpty() ? QString() : "\n" + e.error));
    if (color.isValid()) item->setForeground(color);
    if (selected.contains(e.key)) item->setSelected(true);
  }

  const int failed = failed_count();
  remove_failed_button_->setVisible(failed > 0);
  remove_failed_button_->setText(failed == 1 ? tr("Remove the document that failed")
                                             : tr("Remove the %1 that failed").arg(failed));

  const int64_t used = used_tokens();
  if (context_ <= 0) {
    gauge_->setRange(0, 1);
    gauge_->setValue(0);
    gauge_->setFormat(tr("%1 tokens (no model loaded)").arg(count(used)));
    gauge_label_->setText(tr("The context size is known once the model is loaded."));
  } else {
    // QProgressBar holds ints: fine for contexts up to 2^31 tokens.
    gauge_->setRange(0, static_cast<int>(context_));
    gauge_->setValue(static_cast<int>(std::min(used, context_)));
    const bool over = used + reserve_ > context_;
    gauge_->setFormat(tr("%1 of %2 tokens").arg(count(used), count(context_)));
    gauge_->setStyleSheet(over ? "QProgressBar::chunk { background-color: #c62828; }"
                               : "QProgressBar::chunk { background-color: #2e7d32; }");
    QString text = tr("%1 tokens stay free for the answer.").arg(count(reserve_));
    const bool packed =
        std::any_of(entries_.begin(), entries_.end(), [](const DocumentEntry& e) { return !e.used.isEmpty(); });
    if (over && packed)
      text = tr("<span style='color:#8a5a00'>The documents need %1 tokens more than the context holds, so each "
                "question gets the parts most relevant to it (listed above: what the last one used).</span>")
                 .arg(count(used + reserve_ - context_));
    else if (over)
      text = tr("<span style='color:#c62828'>The documents need %1 tokens more than the context holds. "
                "When you ask, Folio lets you choose what to leave out.</span>")
                 .arg(count(used + reserve_ - context_));
    gauge_label_->setText(text);
  }
  emit entries_changed();
}

void DocumentPanel::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void DocumentPanel::dropEvent(QDropEvent* event) {
  if (accept_drop(event->mimeData())) event->acceptProposedAction();
}

bool DocumentPanel::accept_drop(const QMimeData* mime) {
  QStringList paths;
  for (const QUrl& url : mime->urls())
    if (url.isLocalFile()) paths << url.toLocalFile();
  if (paths.isEmpty()) return false;
  emit paths_dropped(paths);
  return true;
}

}  // namespace folio::ui
