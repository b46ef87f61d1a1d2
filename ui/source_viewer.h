// The pane a citation opens: a PDF page in QPdfView, or a file's lines with the cited ones marked.
#pragma once

#include <QLabel>
#include <QPlainTextEdit>
#include <QStackedWidget>
#include <QWidget>

class QPdfDocument;
class QPdfView;

namespace folio::ui {

class SourceViewer : public QWidget {
  Q_OBJECT

 public:
  explicit SourceViewer(QWidget* parent = nullptr);

  // Shows page page_index (0-based) of a PDF. Returns false (with a message shown) if it
  // cannot be opened.
  bool show_pdf_page(const QString& path, int page_index, const QString& label);
  // Shows a file's text (first line is line 1) with lines [first_line, last_line] marked.
  void show_file_lines(const QString& title, const QString& text, int first_line, int last_line);

  int current_pdf_page() const;
  QString current_title() const { return title_->text(); }
  bool showing_pdf() const;
  int first_marked_line() const { return first_marked_line_; }

 signals:
  void close_requested();

 private:
  QLabel* title_ = nullptr;
  QStackedWidget* stack_ = nullptr;
  QPdfView* pdf_view_ = nullptr;
  QPdfDocument* pdf_ = nullptr;
  QString pdf_path_;
  QPlainTextEdit* text_ = nullptr;
  QLabel* message_ = nullptr;
  int first_marked_line_ = 0;
};

}  // namespace folio::ui
