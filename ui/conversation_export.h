// A stored conversation as Markdown: title, model, documents, then each question and answer. The
// citations of each answer are listed under it: those that point into the documents (resolved
// against the documents as read now, when their content is the one the conversation used) with
// where they go and the start of the cited text; the others marked as not in the documents. Then
// the passages of those documents found to support the answer (core/chat grounding), with quotes.
#pragma once

#include <QString>
#include <QVector>
#include <vector>

#include "core/docs/document.h"
#include "core/store/store.h"

namespace folio::ui {

// `read` holds the documents as read now; only those whose content hash is one of the
// conversation's documents are used to check citations.
QString conversation_markdown(const folio::store::Conversation& conversation,
                              const std::vector<folio::store::DocumentRecord>& documents,
                              const std::vector<folio::store::Message>& messages,
                              const QVector<folio::docs::Document>& read);

}  // namespace folio::ui
