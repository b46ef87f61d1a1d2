#include "ui/source_viewer.h"

#include <QFileInfo>
#include <QHBoxLayout>
#include <QPdfDocument>
#include <QPdfPageNavigator>
#include <QPdfView>
#include <QStyle>
#include <QTextBlock>
#include <QToolButton>
#include <QVBoxLayout>

namespace folio::ui {

SourceViewer::SourceViewer(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  auto* header = new QHBoxLayout();
  title_ = new QLabel(this);
  title_->setObjectName("sourceTitle");
  title_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* close = new QToolButton(this);
  close->setIcon(style()->standardIcon(QStyle::SP_TitleBarCloseButton));
  close->setToolTip(tr("Close the source pane"));
  header->addWidget(title_, 1);
  header->addWidget(close);
  layout->addLayout(header);

  stack_ = new QStackedWidget(this);
  pdf_ = new QPdfDocument(this);
  pdf_view_ = new QPdfView(stack_);
  pdf_view_->setDocument(pdf_);
  pdf_view_->setPageMode(QPdfView::PageMode::SinglePage);
  pdf_view_->setZoomMode(QPdfView::ZoomMode::FitToWidth);
  text_ = new QPlainTextEdit(stack_);
  text_->setReadOnly(true);
  text_->setLineWrapMode(QPlainTextEdit::NoWrap);
  text_->setFont(QFont("monospace"));
  message_ = new QLabel(stack_);
  message_->setWordWrap(true);
  message_->setAlignment(Qt::AlignCenter);
  stack_->addWidget(pdf_view_);
  stack_->addWidget(text_);
  stack_->addWidget(message_);
  layout->addWidget(stack_, 1);
  connect(close, &QToolButton::clicked, this, &SourceViewer::close_requested);
}

bool SourceViewer::show_pdf_page(const QString& path, int page_index, const QString& label) {
  if (pdf_path_ != path || pdf_->status() != QPdfDocument::Status::Ready) {
    pdf_path_ = path;
    const QPdfDocument::Error err = pdf_->load(path);
    if (err != QPdfDocument::Error::None) {
      pdf_path_.clear();
      title_->setText(QFileInfo(path).fileName());
      message_->setText(tr("%1 cannot be opened any more (was it moved or deleted?). Add it again to see its pages.")
                            .arg(QFileInfo(path).fileName()));
      stack_->setCurrentWidget(message_);
      return false;
    }
  }
  page_index = std::clamp(page_index, 0, std::max(0, pdf_->pageCount() - 1));
  title_->setText(
      tr("%1 — page %2").arg(QFileInfo(path).fileName(), label.isEmpty() ? QString::number(page_index + 1) : label));
  stack_->setCurrentWidget(pdf_view_);
  pdf_view_->pageNavigator()->jump(page_index, QPointF(), 0);
  return true;
}

void SourceViewer::show_file_lines(const QString& title, const QString& text, int first_line, int last_line) {
  // Line numbers in the margin of the text itself keep this a plain QPlainTextEdit.
  const QStringList lines = text.split('\n');
  const int width = static_cast<int>(QString::number(lines.size()).size());
  QString numbered;
  numbered.reserve(text.size() + lines.size() * (width + 3));
  for (int i = 0; i < lines.size(); ++i) numbered += QString("%1 │ %2\n").arg(i + 1, width).arg(lines[i]);
  text_->setPlainText(numbered);
  title_->setText(first_line == last_line ? tr("%1 — line %2").arg(title).arg(first_line)
                                          : tr("%1 — lines %2–%3").arg(title).arg(first_line).arg(last_line));
  first_marked_line_ = first_line;
  QList<QTextEdit::ExtraSelection> marks;
  for (int line = first_line; line <= last_line && line <= lines.size(); ++line) {
    QTextEdit::ExtraSelection sel;
    sel.format.setBackground(QColor(0xff, 0xf1, 0x76));
    sel.format.setProperty(QTextFormat::FullWidthSelection, true);
    sel.cursor = QTextCursor(text_->document()->findBlockByNumber(line - 1));
    marks << sel;
  }
  text_->setExtraSelections(marks);
  stack_->setCurrentWidget(text_);
  QTextCursor c(text_->document()->findBlockByNumber(std::max(0, first_line - 1)));
  text_->setTextCursor(c);
  text_->centerCursor();
}

int SourceViewer::current_pdf_page() const {
  return pdf_view_->pageNavigator()->currentPage();
}

bool SourceViewer::showing_pdf() const {
  return stack_->currentWidget() == pdf_view_;
}

}  // namespace folio::ui
