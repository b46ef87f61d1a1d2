// Helpers shared by the Qt Test suites: where the test data is, and skipping when it is absent.
#pragma once

#include <QByteArray>
#include <QString>
#include <QStringList>
#include <QVector>
#include <QtTest>
#include <string>

namespace folio::test {

std::string source_dir();      // the repository root
std::string shared_models();   // ../shared/models (may not exist)
std::string bin_dir();         // where folio-cli and folio-bench are built
bool exists(const std::string& path);
// SmolLM2-135M-Instruct (Q4_1 GGUF) where tools/fetch_model.py puts it ($FOLIO_SMOLLM2_GGUF, else
// $XDG_CACHE_HOME or ~/.cache, /folio/models/); the path whether or not the file is there.
std::string smollm2_path();

// A PDF written by hand: one page per text (Helvetica), optional extra catalog entries (e.g.
// /PageLabels), and optionally encrypted (standard security handler, RC4 40-bit) under a user password.
// A PDF file from its objects (numbered from 1; object 1 the catalog): header, bodies, the xref
// table and the trailer, with trailer_extra added to the trailer dictionary.
QByteArray assemble_pdf(const QVector<QByteArray>& objects, const QByteArray& header = "%PDF-1.4\n",
                        const QByteArray& trailer_extra = {});
QByteArray make_pdf(const QStringList& page_texts, const QByteArray& catalog_extra = {},
                    const QByteArray& user_password = {});
// A one-page PDF whose page tree is nested `depth` levels deep (Qt PDF spins on it for minutes at
// 2,000): the hostile PDF of issue 22.
QByteArray nested_page_tree_pdf(int depth);

// The running processes whose parent is parent_pid and whose command line holds `argument` (e.g.
// the PDF worker, "--parse-pdf"), by pid; zombies left out. Linux (/proc).
QList<qint64> child_processes(qint64 parent_pid, const QByteArray& argument);
bool process_running(qint64 pid);  // exists and is not a zombie

}  // namespace folio::test

// Skips the current test function with a clear message when a data file is missing.
#define FOLIO_REQUIRE_FILE(path)                                                              \
  do {                                                                                        \
    if (!folio::test::exists(path))                                                           \
      QSKIP(qPrintable(QString("test data not found: %1").arg(QString::fromStdString(path)))); \
  } while (0)
