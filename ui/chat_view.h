// The conversation: questions and answers rendered from Markdown in a QTextBrowser, answers
// streamed in as they are generated, citations as links, Copy / Regenerate under answers, and
// the question box with Send and Stop.
#pragma once

#include <QPlainTextEdit>
#include <QPushButton>
#include <QTextBrowser>
#include <QTimer>
#include <QVector>
#include <QWidget>

#include "core/docs/prompt_layout.h"

namespace folio::ui {

// A passage of the documents that supports an answer, as the chat lists it under the answer.
struct SourceLink {
  QString where;  // "manual.pdf, p. 12", "src/engine.cpp:40-58"
  QString quote;
};

struct ChatEntry {
  enum class Kind { User, Assistant, Notice, Error };
  Kind kind = Kind::User;
  QString text;
  bool streaming = false;
  QString footer;  // metrics of the run that produced an answer
  QVector<folio::docs::CitationTarget> citations;
  QVector<folio::docs::CitationCheck> flagged;  // citations written in the answer that point nowhere
  QVector<SourceLink> sources;                  // passages found to support the answer
  QString sources_note;                         // shown where the sources go ("" = none)
  QString html;  // rendered fragment; empty = render again
};

class ChatView : public QWidget {
  Q_OBJECT

 public:
  explicit ChatView(QWidget* parent = nullptr);

  void set_welcome(const QString& markdown, const QStringList& suggestions);
  const QStringList& suggestions() const { return suggestions_; }

  int add_user(const QString& text);
  int begin_assistant();
  void append_to_answer(const QString& text);  // to the answer being streamed
  void finish_answer(const QString& footer, const QVector<folio::docs::CitationTarget>& citations);
  // Under an answer: the passages that support it (links that open them), the citations it wrote
  // that point nowhere (flagged in the text, not linked), and a note (e.g. that nothing was found).
  void set_sources(int entry, const QVector<SourceLink>& sources, const QVector<folio::docs::CitationCheck>& flagged,
                   const QString& note);
  void set_citations(int entry, const QVector<folio::docs::CitationTarget>& citations);
  // Scrolls so that the entry's top is in view.
  void scroll_to_entry(int entry);
  void remove_last_answer();
  int add_notice(const QString& text, bool error = false);
  void clear_messages();

  int count() const { return static_cast<int>(entries_.size()); }
  const ChatEntry& entry(int i) const { return entries_[i]; }
  // The last answer's text (streamed so far); "" if none.
  QString last_answer() const;
  QString transcript() const;  // what the view shows, as plain text

  void set_busy(bool busy);                      // a request runs: Send off, Stop on
  void set_send_blocked(const QString& reason);  // "" = may send
  void set_input_text(const QString& text);
  QString input_text() const;
  // Renders now instead of on the next tick (tests, screenshots).
  void flush_render();

  QTextBrowser* browser() const { return browser_; }
  QPushButton* send_button() const { return send_; }
  QPushButton* stop_button() const { return stop_; }

 signals:
  void send_requested(const QString& question);
  void stop_requested();
  void regenerate_requested();
  void copy_requested(int entry);
  void citation_activated(int entry, const folio::docs::CitationTarget& target);
  void source_activated(int entry, int index);
  void suggestion_activated(int index);

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void schedule_render();
  void render();
  QString render_entry(int index) const;
  void on_anchor(const QUrl& url);
  void submit();
  void update_buttons();

  QVector<ChatEntry> entries_;
  QString welcome_;
  QStringList suggestions_;
  bool busy_ = false;
  QString blocked_;
  QTextBrowser* browser_ = nullptr;
  QPlainTextEdit* input_ = nullptr;
  QPushButton* send_ = nullptr;
  QPushButton* stop_ = nullptr;
  QTimer render_timer_;
};

// Markdown to an HTML fragment (the body of what QTextDocument renders).
QString markdown_to_html_fragment(const QString& markdown);
// The answer with its citations turned into Markdown links "folio-cite:<entry>/<index>".
QString link_citations(const QString& answer, int entry, const QVector<folio::docs::CitationTarget>& citations);
// The answer as an HTML fragment: found citations linked, flagged ones marked as not in the documents.
QString answer_html(const QString& answer, int entry, const QVector<folio::docs::CitationTarget>& citations,
                    const QVector<folio::docs::CitationCheck>& flagged);

}  // namespace folio::ui

Q_DECLARE_METATYPE(folio::docs::CitationTarget)
