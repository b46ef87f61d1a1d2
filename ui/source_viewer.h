// The pane a citation or a source opens: a PDF page (rendered here, with zoom, page steps and the
// cited passage highlighted), or a file's lines with the cited ones marked.
#pragma once

#include <QHash>
#include <QLabel>
#include <QList>
#include <QPlainTextEdit>
#include <QPolygonF>
#include <QScrollArea>
#include <QStackedWidget>
#include <QToolButton>
#include <QWidget>

class QPdfDocument;

namespace folio::ui {

class SourceViewer : public QWidget {
  Q_OBJECT

 public:
  explicit SourceViewer(QWidget* parent = nullptr);

  // The password of a protected PDF, for show_pdf_page (kept in memory only).
  void set_pdf_password(const QString& path, const QString& password) { passwords_.insert(path, password); }
  // Shows page page_index (0-based) of a PDF, with `highlight` (text of the page, white space and
  // punctuation aside) marked when it is found there. Returns false (with a message shown) if the
  // PDF cannot be opened.
  bool show_pdf_page(const QString& path, int page_index, const QString& label, const QString& highlight = {});
  // Shows a file's text (first line is line 1) with lines [first_line, last_line] marked.
  void show_file_lines(const QString& title, const QString& text, int first_line, int last_line);

  int current_pdf_page() const { return page_; }
  QString current_title() const { return title_->text(); }
  bool showing_pdf() const;
  int first_marked_line() const { return first_marked_line_; }
  // The highlighted passage on the page shown: its outlines in page points (empty = none found).
  const QList<QPolygonF>& highlight_bounds() const { return highlight_; }
  QString highlighted_text() const { return highlighted_text_; }

  // Zoom of PDF pages: 1.0 = 100% (a point is 1/72 inch at 96 dpi); fit_width() follows the pane.
  double zoom() const { return zoom_; }
  bool fits_width() const { return fit_width_; }
  void set_zoom(double zoom);
  void zoom_in();
  void zoom_out();
  void fit_width();
  void show_page(int page_index);  // another page of the same PDF (no highlight)

 signals:
  void close_requested();

 protected:
  void resizeEvent(QResizeEvent* event) override;
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void render_page();
  void find_highlight(const QString& text);
  void update_controls();

  QLabel* title_ = nullptr;
  QWidget* pdf_bar_ = nullptr;
  QToolButton* prev_ = nullptr;
  QToolButton* next_ = nullptr;
  QLabel* page_info_ = nullptr;
  QLabel* zoom_info_ = nullptr;
  QStackedWidget* stack_ = nullptr;
  QScrollArea* pdf_scroll_ = nullptr;
  QLabel* pdf_page_ = nullptr;
  QPdfDocument* pdf_ = nullptr;
  QString pdf_path_;
  QHash<QString, QString> passwords_;
  QString pdf_label_;
  int page_ = 0;
  double zoom_ = 1.0;
  bool fit_width_ = true;
  QList<QPolygonF> highlight_;
  QString highlighted_text_;
  QPlainTextEdit* text_ = nullptr;
  QLabel* message_ = nullptr;
  int first_marked_line_ = 0;
};

}  // namespace folio::ui
