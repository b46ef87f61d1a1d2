#include "ui/chat_view.h"

#include <QDesktopServices>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QScrollBar>
#include <QStyle>
#include <QTextDocument>
#include <QVBoxLayout>
#include <algorithm>

namespace folio::ui {

QString markdown_to_html_fragment(const QString& markdown) {
  QTextDocument doc;
  doc.setMarkdown(markdown, QTextDocument::MarkdownDialectGitHub);
  const QString html = doc.toHtml();
  qsizetype begin = html.indexOf("<body");
  begin = begin < 0 ? 0 : html.indexOf('>', begin) + 1;
  qsizetype end = html.lastIndexOf("</body>");
  if (end < begin) end = html.size();
  return html.mid(begin, end - begin);
}

QString link_citations(const QString& answer, int entry, const QVector<folio::docs::CitationTarget>& citations) {
  // Replace from the end so earlier positions stay valid.
  QVector<int> order(citations.size());
  for (int i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return citations[a].citation.start > citations[b].citation.start; });
  QString out = answer;
  for (int i : order) {
    const auto& c = citations[i].citation;
    if (c.start < 0 || c.start + c.length > out.size()) continue;
    const QString shown = out.mid(c.start, c.length);
    out.replace(c.start, c.length, QString("[%1](folio-cite:%2/%3)").arg(shown).arg(entry).arg(i));
  }
  return out;
}

QString answer_html(const QString& answer, int entry, const QVector<folio::docs::CitationTarget>& citations,
                    const QVector<folio::docs::CitationCheck>& flagged) {
  // Flagged citations become placeholders that Markdown leaves alone, then marked-up text.
  QString text = answer;
  QVector<folio::docs::CitationTarget> shifted = citations;
  QVector<int> order(flagged.size());
  for (int i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return flagged[a].citation.start > flagged[b].citation.start; });
  for (int i : order) {
    const auto& c = flagged[i].citation;
    if (c.start < 0 || c.start + c.length > text.size()) continue;
    const QString placeholder = QString("zqfolioflag%1zq").arg(i);
    text.replace(c.start, c.length, placeholder);
    for (auto& t : shifted)
      if (t.citation.start > c.start) t.citation.start += placeholder.size() - c.length;
  }
  QString html = markdown_to_html_fragment(link_citations(text, entry, shifted));
  for (int i = 0; i < flagged.size(); ++i)
    html.replace(QString("zqfolioflag%1zq").arg(i),
                 QString("<span style='color:#b00020'>%1 [%2]</span>")
                     .arg(flagged[i].citation.text.toHtmlEscaped(), QObject::tr("not in the documents")));
  return html;
}

ChatView::ChatView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  browser_ = new QTextBrowser(this);
  browser_->setObjectName("chatBrowser");
  browser_->setOpenLinks(false);
  browser_->setOpenExternalLinks(false);
  browser_->document()->setDocumentMargin(12);
  layout->addWidget(browser_, 1);

  auto* row = new QHBoxLayout();
  input_ = new QPlainTextEdit(this);
  input_->setObjectName("questionInput");
  input_->setPlaceholderText(tr("Ask about your documents…  (Enter sends, Shift+Enter starts a new line)"));
  input_->setFixedHeight(input_->fontMetrics().lineSpacing() * 3 + 16);
  input_->installEventFilter(this);
  row->addWidget(input_, 1);
  auto* col = new QVBoxLayout();
  send_ = new QPushButton(style()->standardIcon(QStyle::SP_ArrowRight), tr("Send"), this);
  send_->setObjectName("sendButton");
  send_->setDefault(true);
  stop_ = new QPushButton(style()->standardIcon(QStyle::SP_MediaStop), tr("Stop"), this);
  stop_->setObjectName("stopButton");
  col->addWidget(send_);
  col->addWidget(stop_);
  row->addLayout(col);
  layout->addLayout(row);

  render_timer_.setSingleShot(true);
  render_timer_.setInterval(40);  // at most 25 re-renders a second while an answer streams
  connect(&render_timer_, &QTimer::timeout, this, &ChatView::render);
  connect(browser_, &QTextBrowser::anchorClicked, this, &ChatView::on_anchor);
  connect(send_, &QPushButton::clicked, this, &ChatView::submit);
  connect(stop_, &QPushButton::clicked, this, &ChatView::stop_requested);
  update_buttons();
  render();
}

bool ChatView::eventFilter(QObject* watched, QEvent* event) {
  if (watched == input_ && event->type() == QEvent::KeyPress) {
    auto* key = static_cast<QKeyEvent*>(event);
    if ((key->key() == Qt::Key_Return || key->key() == Qt::Key_Enter) && !(key->modifiers() & Qt::ShiftModifier)) {
      submit();
      return true;
    }
  }
  return QWidget::eventFilter(watched, event);
}

void ChatView::submit() {
  const QString q = input_->toPlainText().trimmed();
  if (q.isEmpty() || busy_ || !blocked_.isEmpty()) return;
  input_->clear();
  emit send_requested(q);
}

void ChatView::set_welcome(const QString& markdown, const QStringList& suggestions) {
  welcome_ = markdown;
  suggestions_ = suggestions;
  schedule_render();
}

int ChatView::add_user(const QString& text) {
  ChatEntry e;
  e.kind = ChatEntry::Kind::User;
  e.text = text;
  entries_.push_back(e);
  schedule_render();
  return count() - 1;
}

int ChatView::begin_assistant() {
  ChatEntry e;
  e.kind = ChatEntry::Kind::Assistant;
  e.streaming = true;
  entries_.push_back(e);
  schedule_render();
  return count() - 1;
}

void ChatView::append_to_answer(const QString& text) {
  for (int i = count() - 1; i >= 0; --i) {
    if (entries_[i].kind == ChatEntry::Kind::Assistant) {
      entries_[i].text += text;
      entries_[i].html.clear();
      break;
    }
  }
  schedule_render();
}

void ChatView::finish_answer(const QString& footer, const QVector<folio::docs::CitationTarget>& citations) {
  for (int i = count() - 1; i >= 0; --i) {
    if (entries_[i].kind == ChatEntry::Kind::Assistant) {
      entries_[i].streaming = false;
      entries_[i].footer = footer;
      entries_[i].citations = citations;
      entries_[i].html.clear();
      break;
    }
  }
  // Regenerate shows under the last answer only.
  for (auto& e : entries_) e.html.clear();
  schedule_render();
}

void ChatView::set_sources(int entry, const QVector<SourceLink>& sources,
                           const QVector<folio::docs::CitationCheck>& flagged, const QString& note) {
  if (entry < 0 || entry >= count()) return;
  entries_[entry].sources = sources;
  entries_[entry].flagged = flagged;
  entries_[entry].sources_note = note;
  entries_[entry].html.clear();
  schedule_render();
}

void ChatView::set_citations(int entry, const QVector<folio::docs::CitationTarget>& citations) {
  if (entry < 0 || entry >= count()) return;
  entries_[entry].citations = citations;
  entries_[entry].html.clear();
  schedule_render();
}

void ChatView::scroll_to_entry(int entry) {
  flush_render();
  browser_->scrollToAnchor(QString("entry-%1").arg(entry));
}

void ChatView::remove_last_answer() {
  for (int i = count() - 1; i >= 0; --i) {
    if (entries_[i].kind == ChatEntry::Kind::Assistant) {
      entries_.remove(i);
      break;
    }
  }
  for (auto& e : entries_) e.html.clear();
  schedule_render();
}

int ChatView::add_notice(const QString& text, bool error) {
  ChatEntry e;
  e.kind = error ? ChatEntry::Kind::Error : ChatEntry::Kind::Notice;
  e.text = text;
  entries_.push_back(e);
  schedule_render();
  return count() - 1;
}

void ChatView::clear_messages() {
  entries_.clear();
  schedule_render();
}

QString ChatView::last_answer() const {
  for (int i = count() - 1; i >= 0; --i)
    if (entries_[i].kind == ChatEntry::Kind::Assistant) return entries_[i].text;
  return {};
}

QString ChatView::transcript() const {
  return browser_->toPlainText();
}

void ChatView::set_busy(bool busy) {
  busy_ = busy;
  update_buttons();
}

void ChatView::set_send_blocked(const QString& reason) {
  blocked_ = reason;
  update_buttons();
}

void ChatView::set_input_text(const QString& text) {
  input_->setPlainText(text);
}
QString ChatView::input_text() const {
  return input_->toPlainText();
}

void ChatView::update_buttons() {
  send_->setEnabled(!busy_ && blocked_.isEmpty());
  send_->setToolTip(blocked_);
  stop_->setEnabled(busy_);
}

void ChatView::schedule_render() {
  if (!render_timer_.isActive()) render_timer_.start();
}

void ChatView::flush_render() {
  render_timer_.stop();
  render();
}

QString ChatView::render_entry(int index) const {
  const ChatEntry& e = entries_[index];
  QString bg, who, body;
  switch (e.kind) {
    case ChatEntry::Kind::User:
      bg = "#e8f0fe";
      who = tr("You");
      body = markdown_to_html_fragment(e.text);
      break;
    case ChatEntry::Kind::Assistant:
      bg = "#f6f6f6";
      who = tr("Folio");
      body = e.text.isEmpty() && e.streaming ? QString("<p style='color:#777'><i>%1</i></p>").arg(tr("thinking…"))
                                             : answer_html(e.text, index, e.citations, e.flagged);
      if (!e.streaming && (!e.sources.isEmpty() || !e.flagged.isEmpty() || !e.sources_note.isEmpty())) {
        body += QString("<p style='margin-top:6px; margin-bottom:2px'><b>%1</b></p>").arg(tr("Sources"));
        for (int i = 0; i < e.sources.size(); ++i)
          body += QString("<p style='margin:2px 0 2px 12px'>%1. <a href='folio-source:%2/%3'>%4</a> — <i>“%5”</i></p>")
                      .arg(i + 1)
                      .arg(index)
                      .arg(i)
                      .arg(e.sources[i].where.toHtmlEscaped(), e.sources[i].quote.toHtmlEscaped());
        for (const auto& f : e.flagged)
          body += QString("<p style='margin:2px 0 2px 12px; color:#b00020'>%1</p>")
                      .arg(tr("Cited “%1”, but %2.").arg(f.citation.text, f.problem).toHtmlEscaped());
        if (!e.sources_note.isEmpty())
          body += QString("<p style='margin:2px 0 2px 12px; color:#666'>%1</p>").arg(e.sources_note.toHtmlEscaped());
      }
      break;
    case ChatEntry::Kind::Notice:
      bg = "#fff4e0";
      who = tr("Notice");
      body = markdown_to_html_fragment(e.text);
      break;
    case ChatEntry::Kind::Error:
      bg = "#fde7e9";
      who = tr("Problem");
      body = markdown_to_html_fragment(e.text);
      break;
  }
  // (The anchor is apart: body is user text and may hold "%4".)
  QString html = QString("<a name='entry-%1'></a>").arg(index) +
                 QString(
                     "<table width='100%' cellspacing='0' cellpadding='8' style='margin-bottom:8px' bgcolor='%1'>"
                     "<tr><td><b>%2</b>%3</td></tr></table>")
                     .arg(bg, who, body);
  if (e.kind == ChatEntry::Kind::Assistant && !e.streaming) {
    int last_answer = -1;
    for (int i = count() - 1; i >= 0; --i)
      if (entries_[i].kind == ChatEntry::Kind::Assistant) {
        last_answer = i;
        break;
      }
    QString actions = QString("<a href='folio-copy:%1'>%2</a>").arg(index).arg(tr("Copy"));
    if (index == last_answer) actions += QString(" &nbsp; <a href='folio-regenerate:'>%1</a>").arg(tr("Regenerate"));
    html.replace("</td></tr></table>", QString("<p style='color:#666; font-size:small'>%1 &nbsp; %2</p></td></tr>"
                                               "</table>")
                                           .arg(e.footer.toHtmlEscaped(), actions));
  }
  return html;
}

void ChatView::render() {
  QScrollBar* bar = browser_->verticalScrollBar();
  const bool at_bottom = bar->value() >= bar->maximum() - 4;
  const int value = bar->value();
  QString html;
  if (entries_.isEmpty()) {
    html += markdown_to_html_fragment(welcome_);
    if (!suggestions_.isEmpty()) {
      html += "<ul>";
      for (int i = 0; i < suggestions_.size(); ++i)
        html += QString("<li><a href='folio-ask:%1'>%2</a></li>").arg(i).arg(suggestions_[i].toHtmlEscaped());
      html += "</ul>";
    }
  }
  for (int i = 0; i < count(); ++i) {
    if (entries_[i].html.isEmpty()) entries_[i].html = render_entry(i);
    html += entries_[i].html;
  }
  browser_->setHtml(html);
  bar->setValue(at_bottom ? bar->maximum() : value);
}

void ChatView::on_anchor(const QUrl& url) {
  const QString scheme = url.scheme();
  const QString path = url.path();
  if (scheme == "folio-cite") {
    const QStringList parts = path.split('/');
    if (parts.size() != 2) return;
    const int entry = parts[0].toInt(), i = parts[1].toInt();
    if (entry < 0 || entry >= count() || i < 0 || i >= entries_[entry].citations.size()) return;
    emit citation_activated(entry, entries_[entry].citations[i]);
  } else if (scheme == "folio-source") {
    const QStringList parts = path.split('/');
    if (parts.size() != 2) return;
    const int entry = parts[0].toInt(), i = parts[1].toInt();
    if (entry < 0 || entry >= count() || i < 0 || i >= entries_[entry].sources.size()) return;
    emit source_activated(entry, i);
  } else if (scheme == "folio-copy") {
    emit copy_requested(path.toInt());
  } else if (scheme == "folio-regenerate") {
    if (!busy_) emit regenerate_requested();
  } else if (scheme == "folio-ask") {
    emit suggestion_activated(path.toInt());
  } else if (scheme == "http" || scheme == "https" || scheme == "mailto") {
    QDesktopServices::openUrl(url);
  }
}

}  // namespace folio::ui
