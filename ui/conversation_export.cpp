#include "ui/conversation_export.h"

#include <QObject>
#include <QStringList>
#include <algorithm>
#include <optional>

#include "core/chat/grounding.h"
#include "core/docs/prompt_layout.h"

namespace folio::ui {

namespace {

// The start of a section's text on one line, for a quote.
QString quote(const QString& text) {
  QString q = text.simplified();
  if (q.size() > 140) q = q.left(140).trimmed() + "…";
  return q;
}

QString where(const folio::docs::Document& doc, const folio::docs::CitationTarget& t) {
  if (t.citation.kind == folio::docs::CitationKind::Pages) {
    const QString first = t.first_page >= 0 && t.first_page < doc.page_labels.size() ? doc.page_labels[t.first_page]
                                                                                     : QString::number(t.first_page + 1);
    return QObject::tr("%1, page %2").arg(doc.title, first);
  }
  return t.first_line == t.last_line ? QObject::tr("%1, line %2").arg(t.file).arg(t.first_line)
                                     : QObject::tr("%1, lines %2-%3").arg(t.file).arg(t.first_line).arg(t.last_line);
}

}  // namespace

QString conversation_markdown(const folio::store::Conversation& c,
                              const std::vector<folio::store::DocumentRecord>& documents,
                              const std::vector<folio::store::Message>& messages,
                              const QVector<folio::docs::Document>& read) {
  QVector<folio::docs::Document> same;  // the documents as the conversation used them
  for (const auto& d : read)
    for (const auto& r : documents)
      if (!d.content_hash.isEmpty() && d.content_hash == r.content_hash) same.push_back(d);

  // Grounding over the same documents (none: nothing to ground against).
  std::optional<folio::chat::GroundingIndex> grounding;
  if (!same.isEmpty()) grounding.emplace(folio::docs::chat_documents(same));
  QString question;

  QString md = "# " + c.title + "\n\n";
  if (!c.model.isEmpty()) md += QObject::tr("Model: %1").arg(c.model) + "\n\n";
  if (!documents.empty()) {
    md += "## " + QObject::tr("Documents") + "\n\n";
    for (const auto& d : documents) md += "- " + d.title + " (`" + d.path + "`)\n";
    md += "\n";
  }
  for (const auto& m : messages) {
    if (m.role == folio::store::Role::User) {
      md += "## " + QObject::tr("Question") + "\n\n" + m.text + "\n\n";
      question = m.text;
      continue;
    }
    if (m.role != folio::store::Role::Assistant) continue;
    md += "### " + QObject::tr("Answer") + "\n\n" + m.text + "\n\n";
    if (grounding) {
      const std::vector<folio::chat::SourcePassage> found =
          grounding->ground(m.text.toStdString(), question.toStdString());
      if (!found.empty()) {
        md += QObject::tr("Sources found in the documents:") + "\n\n";
        for (const folio::chat::SourcePassage& p : found)
          md += "- " + QString::fromStdString(folio::chat::source_location(grounding->documents()[p.document], p)) +
                " — “" + QString::fromStdString(p.quote) + "”\n";
        md += "\n";
      }
    }
    const QVector<folio::docs::Citation> written = folio::docs::parse_citations(m.text);
    if (written.isEmpty()) continue;
    const QVector<folio::docs::CitationTarget> found = folio::docs::resolve_citations(m.text, same);
    md += QObject::tr("Sources cited:") + "\n\n";
    for (const auto& cite : written) {
      const folio::docs::CitationTarget* t = nullptr;
      for (const auto& f : found)
        if (f.citation.start == cite.start) t = &f;
      if (t == nullptr) {
        md += "- " + cite.text + ": " +
              (same.isEmpty() ? QObject::tr("not checked (the documents could not be read as they were)")
                              : QObject::tr("not in the documents")) +
              "\n";
        continue;
      }
      const folio::docs::Document& doc = same[t->document];
      md += "- " + cite.text + ": " + where(doc, *t);
      if (t->section >= 0 && t->section < doc.sections.size()) {
        const folio::docs::Section& section = doc.sections[t->section];
        QString text = section.text;
        if (t->citation.kind == folio::docs::CitationKind::FileLines && section.first_line > 0) {
          // The cited lines themselves, not the start of their section.
          const QStringList lines = section.text.split('\n');
          const int from = std::clamp(t->first_line - section.first_line, 0, static_cast<int>(lines.size()));
          const int to = std::clamp(t->last_line - section.first_line + 1, from, static_cast<int>(lines.size()));
          text = lines.mid(from, to - from).join('\n');
        }
        md += " — “" + quote(text) + "”";
      }
      md += "\n";
    }
    md += "\n";
  }
  return md;
}

}  // namespace folio::ui
