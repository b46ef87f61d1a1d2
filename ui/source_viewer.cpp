#include "ui/source_viewer.h"

#include <QFileInfo>
#include <QHBoxLayout>
#include <QPainter>
#include <QPdfDocument>
#include <QPdfSelection>
#include <QScrollBar>
#include <QShortcut>
#include <QStyle>
#include <QTextBlock>
#include <QVBoxLayout>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>

namespace folio::ui {

namespace {

constexpr double kMinZoom = 0.25, kMaxZoom = 4.0, kZoomStep = 1.25;
constexpr double kPixelsPerPoint = 96.0 / 72.0;  // at 100%

QToolButton* tool(QWidget* parent, const QString& text, const QString& tip) {
  auto* b = new QToolButton(parent);
  b->setText(text);
  b->setToolTip(tip);
  b->setAutoRaise(true);
  return b;
}

// Letters and digits only, lower-cased, each with its index in `text`: the page text as PDFium
// gives it and the passage as Folio quotes it differ in white space, line ends and hyphens.
QString folded(const QString& text, QVector<int>* positions) {
  QString out;
  out.reserve(text.size());
  for (int i = 0; i < text.size(); ++i) {
    const QChar c = text[i];
    if (!c.isLetterOrNumber()) continue;
    out += c.toLower();
    if (positions != nullptr) positions->push_back(i);
  }
  return out;
}

}  // namespace

SourceViewer::SourceViewer(QWidget* parent) : QWidget(parent) {
  setObjectName("sourceViewer");
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  auto* header = new QHBoxLayout();
  title_ = new QLabel(this);
  title_->setObjectName("sourceTitle");
  title_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  title_->setWordWrap(true);
  auto* close = new QToolButton(this);
  close->setIcon(style()->standardIcon(QStyle::SP_TitleBarCloseButton));
  close->setToolTip(tr("Close the source pane"));
  header->addWidget(title_, 1);
  header->addWidget(close);
  layout->addLayout(header);

  // Page steps and zoom, for PDFs.
  pdf_bar_ = new QWidget(this);
  auto* bar = new QHBoxLayout(pdf_bar_);
  bar->setContentsMargins(0, 0, 0, 0);
  prev_ = tool(pdf_bar_, "‹", tr("Previous page"));
  next_ = tool(pdf_bar_, "›", tr("Next page"));
  page_info_ = new QLabel(pdf_bar_);
  auto* out = tool(pdf_bar_, "−", tr("Zoom out (Ctrl+-, or Ctrl+wheel)"));
  auto* in = tool(pdf_bar_, "+", tr("Zoom in (Ctrl++, or Ctrl+wheel)"));
  auto* fit = tool(pdf_bar_, tr("Fit width"), tr("Fit the page to the pane's width (Ctrl+0)"));
  out->setObjectName("zoomOut");
  in->setObjectName("zoomIn");
  fit->setObjectName("fitWidth");
  zoom_info_ = new QLabel(pdf_bar_);
  bar->addWidget(prev_);
  bar->addWidget(page_info_);
  bar->addWidget(next_);
  bar->addStretch(1);
  bar->addWidget(out);
  bar->addWidget(zoom_info_);
  bar->addWidget(in);
  bar->addWidget(fit);
  layout->addWidget(pdf_bar_);

  stack_ = new QStackedWidget(this);
  pdf_ = new QPdfDocument(this);
  pdf_scroll_ = new QScrollArea(stack_);
  pdf_scroll_->setAlignment(Qt::AlignHCenter | Qt::AlignTop);
  pdf_scroll_->setBackgroundRole(QPalette::Dark);
  pdf_page_ = new QLabel(pdf_scroll_);
  pdf_page_->setObjectName("pdfPage");
  pdf_scroll_->setWidget(pdf_page_);
  pdf_scroll_->viewport()->installEventFilter(this);
  text_ = new QPlainTextEdit(stack_);
  text_->setReadOnly(true);
  text_->setLineWrapMode(QPlainTextEdit::NoWrap);
  text_->setFont(QFont("monospace"));
  message_ = new QLabel(stack_);
  message_->setWordWrap(true);
  message_->setAlignment(Qt::AlignCenter);
  stack_->addWidget(pdf_scroll_);
  stack_->addWidget(text_);
  stack_->addWidget(message_);
  layout->addWidget(stack_, 1);
  pdf_bar_->hide();

  connect(close, &QToolButton::clicked, this, &SourceViewer::close_requested);
  connect(prev_, &QToolButton::clicked, this, [this] { show_page(page_ - 1); });
  connect(next_, &QToolButton::clicked, this, [this] { show_page(page_ + 1); });
  connect(in, &QToolButton::clicked, this, &SourceViewer::zoom_in);
  connect(out, &QToolButton::clicked, this, &SourceViewer::zoom_out);
  connect(fit, &QToolButton::clicked, this, &SourceViewer::fit_width);
  for (const auto& [keys, slot] : {std::pair{QKeySequence::ZoomIn, &SourceViewer::zoom_in},
                                   std::pair{QKeySequence::ZoomOut, &SourceViewer::zoom_out}}) {
    auto* s = new QShortcut(keys, this);
    s->setContext(Qt::WidgetWithChildrenShortcut);
    connect(s, &QShortcut::activated, this, slot);
  }
  auto* reset = new QShortcut(QKeySequence(Qt::CTRL | Qt::Key_0), this);
  reset->setContext(Qt::WidgetWithChildrenShortcut);
  connect(reset, &QShortcut::activated, this, &SourceViewer::fit_width);
}

bool SourceViewer::show_pdf_page(const QString& path, int page_index, const QString& label, const QString& highlight) {
  if (pdf_path_ != path || pdf_->status() != QPdfDocument::Status::Ready) {
    pdf_path_ = path;
    pdf_->setPassword(passwords_.value(path));
    const QPdfDocument::Error err = pdf_->load(path);
    if (err != QPdfDocument::Error::None) {
      pdf_path_.clear();
      pdf_bar_->hide();
      title_->setText(QFileInfo(path).fileName());
      message_->setText(tr("%1 cannot be opened any more (was it moved or deleted?). Add it again to see its pages.")
                            .arg(QFileInfo(path).fileName()));
      stack_->setCurrentWidget(message_);
      return false;
    }
  }
  page_ = std::clamp(page_index, 0, std::max(0, pdf_->pageCount() - 1));
  pdf_label_ = label;
  stack_->setCurrentWidget(pdf_scroll_);
  pdf_bar_->show();
  find_highlight(highlight);
  render_page();
  return true;
}

void SourceViewer::show_page(int page_index) {
  if (pdf_path_.isEmpty() || page_index < 0 || page_index >= pdf_->pageCount()) return;
  page_ = page_index;
  pdf_label_.clear();
  highlight_.clear();
  highlighted_text_.clear();
  render_page();
  pdf_scroll_->verticalScrollBar()->setValue(0);
}

void SourceViewer::find_highlight(const QString& text) {
  highlight_.clear();
  highlighted_text_.clear();
  QString wanted = text;
  wanted.remove(QChar(0x2026));  // the "…" of a cut quote
  const QString needle = folded(wanted, nullptr);
  if (needle.size() < 4) return;
  const QString page_text = pdf_->getAllText(page_).text();
  QVector<int> positions;
  const QString hay = folded(page_text, &positions);
  // The whole passage, else its beginning (a quote may run past what the page holds in one piece).
  for (const qsizetype length :
       {needle.size(), std::min<qsizetype>(needle.size(), 80), std::min<qsizetype>(needle.size(), 32)}) {
    const qsizetype at = hay.indexOf(needle.left(length));
    if (at < 0) continue;
    const int start = positions[at];
    const int end = positions[at + length - 1] + 1;
    const QPdfSelection selection = pdf_->getSelectionAtIndex(page_, start, end - start);
    highlight_ = selection.bounds();
    highlighted_text_ = selection.text();
    return;
  }
}

void SourceViewer::render_page() {
  const QSizeF points = pdf_->pagePointSize(page_);
  if (points.isEmpty()) return;
  if (fit_width_) {
    const int width = pdf_scroll_->viewport()->width() - 4;
    zoom_ = std::clamp(width / (points.width() * kPixelsPerPoint), kMinZoom, kMaxZoom);
  }
  const double scale = zoom_ * kPixelsPerPoint * devicePixelRatioF();
  const QSize pixels(qRound(points.width() * scale), qRound(points.height() * scale));
  const QImage rendered = pdf_->render(page_, pixels);
  if (rendered.isNull()) return;
  // PDFium leaves the paper transparent: white paper under it.
  QImage image(rendered.size(), QImage::Format_ARGB32_Premultiplied);
  image.fill(Qt::white);
  {
    QPainter paper(&image);
    paper.drawImage(0, 0, rendered);
  }
  if (!highlight_.isEmpty()) {
    QPainter painter(&image);
    painter.setRenderHint(QPainter::Antialiasing);
    painter.setPen(Qt::NoPen);
    painter.setBrush(QColor(255, 214, 0, 110));
    painter.setCompositionMode(QPainter::CompositionMode_Multiply);
    for (const QPolygonF& p : std::as_const(highlight_))
      painter.drawPolygon(QTransform::fromScale(scale, scale).map(p));
  }
  image.setDevicePixelRatio(devicePixelRatioF());
  pdf_page_->setPixmap(QPixmap::fromImage(image));
  pdf_page_->resize(pdf_page_->sizeHint());
  if (!highlight_.isEmpty()) {
    // The passage in view, a little below the top of the pane.
    QRectF box;
    for (const QPolygonF& p : std::as_const(highlight_)) box |= p.boundingRect();
    const double view = zoom_ * kPixelsPerPoint;
    pdf_scroll_->verticalScrollBar()->setValue(std::max(0, qRound(box.top() * view) - 60));
    pdf_scroll_->horizontalScrollBar()->setValue(std::max(0, qRound(box.left() * view) - 40));
  }
  update_controls();
}

void SourceViewer::update_controls() {
  const QString file = QFileInfo(pdf_path_).fileName();
  title_->setText(tr("%1 — page %2").arg(file, pdf_label_.isEmpty() ? QString::number(page_ + 1) : pdf_label_));
  page_info_->setText(tr("%1 of %2").arg(page_ + 1).arg(pdf_->pageCount()));
  zoom_info_->setText(QString("%1%").arg(qRound(zoom_ * 100)));
  prev_->setEnabled(page_ > 0);
  next_->setEnabled(page_ + 1 < pdf_->pageCount());
}

void SourceViewer::set_zoom(double zoom) {
  fit_width_ = false;
  zoom_ = std::clamp(zoom, kMinZoom, kMaxZoom);
  if (showing_pdf()) render_page();
}

void SourceViewer::zoom_in() {
  set_zoom(zoom_ * kZoomStep);
}

void SourceViewer::zoom_out() {
  set_zoom(zoom_ / kZoomStep);
}

void SourceViewer::fit_width() {
  fit_width_ = true;
  if (showing_pdf()) render_page();
}

void SourceViewer::resizeEvent(QResizeEvent* event) {
  QWidget::resizeEvent(event);
  if (fit_width_ && showing_pdf()) render_page();
}

bool SourceViewer::eventFilter(QObject* watched, QEvent* event) {
  if (watched == pdf_scroll_->viewport() && event->type() == QEvent::Wheel) {
    auto* wheel = static_cast<QWheelEvent*>(event);
    if (wheel->modifiers() & Qt::ControlModifier) {
      const int steps = wheel->angleDelta().y() / 120;
      if (steps != 0) set_zoom(zoom_ * std::pow(kZoomStep, steps));
      return true;
    }
  }
  return QWidget::eventFilter(watched, event);
}

void SourceViewer::show_file_lines(const QString& title, const QString& text, int first_line, int last_line) {
  pdf_bar_->hide();
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

bool SourceViewer::showing_pdf() const {
  return stack_->currentWidget() == pdf_scroll_;
}

}  // namespace folio::ui
