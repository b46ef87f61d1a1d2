#include "ui/history_panel.h"

#include <QHBoxLayout>
#include <QInputDialog>
#include <QLocale>
#include <QMenu>
#include <QVBoxLayout>

namespace folio::ui {

HistoryPanel::HistoryPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  search_ = new QLineEdit(this);
  search_->setObjectName("historySearch");
  search_->setPlaceholderText(tr("Search conversations…"));
  search_->setToolTip(tr("Finds conversations by their title, their messages, or the text of their PDFs"));
  search_->setClearButtonEnabled(true);
  layout->addWidget(search_);
  list_ = new QListWidget(this);
  list_->setObjectName("historyList");
  list_->setWordWrap(true);
  list_->setToolTip(tr("Double-click to open; right-click to rename, export or delete"));
  list_->setContextMenuPolicy(Qt::CustomContextMenu);
  layout->addWidget(list_, 1);
  empty_ = new QLabel(this);
  empty_->setWordWrap(true);
  empty_->setStyleSheet("color:#555");
  layout->addWidget(empty_);

  undo_bar_ = new QWidget(this);
  auto* undo_layout = new QHBoxLayout(undo_bar_);
  undo_layout->setContentsMargins(0, 0, 0, 0);
  undo_label_ = new QLabel(undo_bar_);
  undo_label_->setWordWrap(true);
  undo_ = new QPushButton(tr("Undo"), undo_bar_);
  undo_->setObjectName("historyUndo");
  undo_layout->addWidget(undo_label_, 1);
  undo_layout->addWidget(undo_);
  undo_bar_->hide();
  layout->addWidget(undo_bar_);

  connect(search_, &QLineEdit::textChanged, this, &HistoryPanel::refresh);
  connect(list_, &QListWidget::itemActivated, this,
          [this](QListWidgetItem* item) { emit open_requested(item->data(Qt::UserRole).toLongLong()); });
  connect(undo_, &QPushButton::clicked, this, &HistoryPanel::undo_requested);
  connect(list_, &QListWidget::customContextMenuRequested, this, [this](const QPoint& at) {
    QListWidgetItem* item = list_->itemAt(at);
    if (item == nullptr) return;
    const qint64 id = item->data(Qt::UserRole).toLongLong();
    const QString title = item->data(Qt::UserRole + 1).toString();
    QMenu menu(this);
    menu.addAction(tr("Open"), this, [this, id] { emit open_requested(id); });
    menu.addAction(tr("Rename…"), this, [this, id, title] {
      bool ok = false;
      const QString t = QInputDialog::getText(this, tr("Rename conversation"), tr("Title:"), QLineEdit::Normal, title, &ok);
      if (ok && !t.trimmed().isEmpty()) emit rename_requested(id, t.trimmed());
    });
    menu.addAction(tr("Export as Markdown…"), this, [this, id] { emit export_requested(id); });
    menu.addSeparator();
    menu.addAction(tr("Delete"), this, [this, id] { emit delete_requested(id); });
    menu.exec(list_->viewport()->mapToGlobal(at));
  });
}

void HistoryPanel::refresh() {
  list_->clear();
  if (db_ == nullptr) {
    empty_->setText(tr("Conversations are not saved (the database could not be opened)."));
    return;
  }
  std::vector<folio::store::Conversation> all;
  try {
    all = db_->search_conversations(search_->text());
  } catch (const std::exception& e) {
    empty_->setText(tr("The conversations could not be read: %1").arg(QString::fromStdString(e.what())));
    return;
  }
  for (const auto& c : all) {
    if (c.id == pending_delete_) continue;
    const QString when = QLocale().toString(c.updated.toLocalTime(), QLocale::ShortFormat);
    auto* item = new QListWidgetItem(c.title + "\n" + when + (c.model.isEmpty() ? QString() : " · " + c.model), list_);
    item->setData(Qt::UserRole, QVariant::fromValue<qlonglong>(c.id));
    item->setData(Qt::UserRole + 1, c.title);
    if (c.id == current_) {
      QFont f = item->font();
      f.setBold(true);
      item->setFont(f);
    }
  }
  empty_->setText(list_->count() > 0 ? QString()
                  : search_->text().trimmed().isEmpty()
                      ? tr("No conversations yet: your questions and answers are kept here.")
                      : tr("No conversation contains “%1”.").arg(search_->text().trimmed()));
  empty_->setVisible(list_->count() == 0);
}

void HistoryPanel::set_current(int64_t conversation_id) {
  current_ = conversation_id;
  refresh();
}

void HistoryPanel::mark_deleted(int64_t id, const QString& title) {
  pending_delete_ = id;
  undo_label_->setText(tr("Deleted “%1”.").arg(title));
  undo_bar_->show();
  refresh();
}

void HistoryPanel::undo_deletion() {
  pending_delete_ = 0;
  undo_bar_->hide();
  refresh();
}

int64_t HistoryPanel::take_pending_deletion() {
  const int64_t id = pending_delete_;
  pending_delete_ = 0;
  undo_bar_->hide();
  if (id != 0 && db_ != nullptr) db_->delete_conversation(id);
  refresh();
  return id;
}

QList<int64_t> HistoryPanel::listed_ids() const {
  QList<int64_t> ids;
  for (int i = 0; i < list_->count(); ++i) ids << list_->item(i)->data(Qt::UserRole).toLongLong();
  return ids;
}

}  // namespace folio::ui
