// PDFs read in a guarded worker process. Qt PDF (PDFium) can be made to spin for minutes (a page
// tree nested thousands of levels deep) or to take gigabytes (a content stream that inflates far
// beyond its size), and a thread stuck inside it can be neither cancelled nor stopped. So the
// app and folio-cli run their own binary as "PROGRAM --parse-pdf PATH": the worker reads the PDF
// with the in-process loader and answers on stdout (QDataStream: the Document or the error), with
// progress lines on stderr. The parent stops it past a time limit, past a memory limit (its
// resident memory, polled; an address-space rlimit as the backstop) or on cancel, and says which.
#include <QDataStream>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QProcess>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/docs/docs_internal.h"

namespace folio::docs {

namespace {

constexpr quint32 kAnswerMagic = 0x464F5044;  // "FOPD"
constexpr quint32 kAnswerVersion = 1;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

void write_document(QDataStream& out, const Document& doc) {
  out << doc.path << doc.title << doc.content_hash << qint32(doc.page_count) << doc.notices << doc.page_labels
      << doc.cite_by_page_number << qint64(doc.sections.size());
  for (const Section& s : doc.sections) out << s.text << qint32(s.page_index) << s.page_label;
}

bool read_document(QDataStream& in, Document* doc) {
  qint32 pages = 0;
  qint64 sections = 0;
  in >> doc->path >> doc->title >> doc->content_hash >> pages >> doc->notices >> doc->page_labels >>
      doc->cite_by_page_number >> sections;
  if (in.status() != QDataStream::Ok || sections < 0 || sections > pages) return false;
  doc->kind = DocumentKind::Pdf;
  doc->page_count = pages;
  doc->sections.reserve(static_cast<qsizetype>(sections));
  for (qint64 i = 0; i < sections; ++i) {
    Section s;
    qint32 page_index = -1;
    in >> s.text >> page_index >> s.page_label;
    s.page_index = page_index;
    doc->sections.push_back(std::move(s));
  }
  return in.status() == QDataStream::Ok;
}

int64_t resident_bytes(qint64 pid) {
  QFile status(QString("/proc/%1/status").arg(pid));
  if (!status.open(QIODevice::ReadOnly)) return 0;
  for (const QByteArray& line : status.readAll().split('\n'))
    if (line.startsWith("VmRSS:")) return line.mid(6).trimmed().split(' ').front().toLongLong() * 1024;
  return 0;
}

int64_t time_limit_ms(const QString& path, const LoadOptions& options) {
  if (options.pdf_time_limit_ms > 0) return options.pdf_time_limit_ms;
  const int64_t mib = QFileInfo(path).size() >> 20;
  return std::min<int64_t>(300'000, 8'000 + 4'000 * mib);
}

QString seconds(int64_t ms) {
  return QString::number(static_cast<double>(ms) / 1000.0, 'f', ms < 10'000 ? 1 : 0);
}

}  // namespace

int run_pdf_worker(const QString& path) {
  std::string password;
  std::getline(std::cin, password);
  LoadOptions options;
  options.pdf_password = QString::fromStdString(password);
  options.on_progress = [](int done, int total) {
    std::fprintf(stderr, "progress %d %d\n", done, total);
    std::fflush(stderr);
  };
  QByteArray answer;
  QDataStream out(&answer, QIODevice::WriteOnly);
  out << kAnswerMagic << kAnswerVersion;
  try {
    const Document doc = detail::load_pdf_in_process(path, options);
    out << true;
    write_document(out, doc);
  } catch (const DocumentError& e) {
    out << false << qint32(static_cast<int>(e.problem())) << QString::fromUtf8(e.what());
  }
  for (qsizetype done = 0; done < answer.size();) {
    const ssize_t n = ::write(STDOUT_FILENO, answer.constData() + done, static_cast<size_t>(answer.size() - done));
    if (n <= 0) return 3;
    done += n;
  }
  // The answer is out: the process ends here, without tearing down what Qt PDF holds (some of it is
  // never freed, which LeakSanitizer would turn into a crash after a finished answer).
  std::fflush(stderr);
  ::_exit(0);
}

namespace {

// The SHA-256 of a file's bytes (hex) read in pieces; "" when it cannot be read (the loader then
// says why).
QString file_sha256(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  QCryptographicHash hash(QCryptographicHash::Sha256);
  if (!hash.addData(&f)) return {};
  return QString::fromLatin1(hash.result().toHex());
}

Document parse_pdf(const QString& path, const LoadOptions& options);

}  // namespace

Document load_pdf(const QString& path, const LoadOptions& options) {
  if (options.document_cache == nullptr || !options.pdf_password.isEmpty()) return parse_pdf(path, options);
  detail::require_file(QFileInfo(path), path, "a PDF");
  detail::check_cancel(options, path);
  const QString hash = file_sha256(path);
  if (!hash.isEmpty()) {
    if (std::optional<Document> known = options.document_cache->find(hash, kPdfReadVersion)) {
      known->path = path;
      known->title = QFileInfo(path).fileName();
      detail::report(options, known->page_count, known->page_count);
      return std::move(*known);
    }
  }
  Document doc = parse_pdf(path, options);
  // Kept only when the bytes read are those hashed (the file did not change in between).
  if (!hash.isEmpty() && doc.content_hash == hash) options.document_cache->put(doc, kPdfReadVersion);
  return doc;
}

namespace {

Document parse_pdf(const QString& path, const LoadOptions& options) {
  using detail::shown;
  if (options.pdf_worker.isEmpty()) return detail::load_pdf_in_process(path, options);
  // Checked here too: the worker must not be the one to open a FIFO.
  detail::require_file(QFileInfo(path), path, "a PDF");
  detail::check_cancel(options, path);

  const int64_t limit_ms = time_limit_ms(path, options);
  const int64_t memory_limit = options.pdf_memory_limit_bytes;
  QProcess worker;
  worker.setProgram(options.pdf_worker);
  worker.setArguments({"--parse-pdf", path});
  const pid_t parent = ::getpid();
  worker.setChildProcessModifier([memory_limit, limit_ms, parent] {
    // The backstop if polling is late: address space well above the resident limit (libraries
    // and thread stacks are mapped but not resident). ASan reserves terabytes of address space,
    // so it runs without it.
    if (!kAddressSanitizer && memory_limit > 0) {
      const rlim_t bytes = static_cast<rlim_t>(memory_limit) + (rlim_t{4} << 30);
      const rlimit limit{bytes, bytes};
      ::setrlimit(RLIMIT_AS, &limit);
    }
    // A worker never outlives the app: killed when the thread that started it ends (the app
    // crashed or was killed before it could stop the worker), and its CPU time is capped past
    // the time limit in case the app is stopped (SIGSTOP) or too slow to poll.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(4);  // the app ended before the line above
    const rlim_t cpu_s = static_cast<rlim_t>(limit_ms / 1000 + 10);
    const rlimit cpu{cpu_s, cpu_s};
    ::setrlimit(RLIMIT_CPU, &cpu);
    // Below the app's priority: a PDF built to spin takes an idle core, not the window's.
    ::setpriority(PRIO_PROCESS, 0, 10);
  });
  worker.start();
  if (!worker.waitForStarted(10'000))
    throw DocumentError(DocumentProblem::Unreadable, path,
                        QString("%1: the PDF reader process could not start (%2); reinstall Folio")
                            .arg(shown(path), worker.errorString()));
  worker.write(options.pdf_password.toUtf8() + "\n");
  worker.closeWriteChannel();

  enum class Stop { None, Time, Memory, Cancel } stop = Stop::None;
  QElapsedTimer clock;
  clock.start();
  int64_t peak_bytes = 0;
  QByteArray answer, progress;
  while (worker.state() != QProcess::NotRunning) {
    worker.waitForFinished(50);
    answer += worker.readAllStandardOutput();
    progress += worker.readAllStandardError();
    if (progress.size() > (1 << 20)) progress.clear();  // a worker that writes no newlines: ignore it
    for (qsizetype nl; (nl = progress.indexOf('\n')) >= 0; progress.remove(0, nl + 1)) {
      const QList<QByteArray> parts = progress.left(nl).split(' ');
      if (parts.size() == 3 && parts[0] == "progress") detail::report(options, parts[1].toInt(), parts[2].toInt());
    }
    if (worker.state() == QProcess::NotRunning) break;
    peak_bytes = std::max(peak_bytes, resident_bytes(worker.processId()));
    if (options.cancel != nullptr && options.cancel->cancelled())
      stop = Stop::Cancel;
    else if (memory_limit > 0 && peak_bytes > memory_limit)
      stop = Stop::Memory;
    else if (clock.elapsed() > limit_ms)
      stop = Stop::Time;
    if (stop != Stop::None) {
      worker.kill();
      worker.waitForFinished(5'000);
      break;
    }
  }
  answer += worker.readAllStandardOutput();
  switch (stop) {
    case Stop::Cancel:
      throw DocumentError(DocumentProblem::Cancelled, path,
                          QString("%1: loading was cancelled; add the document again to read it").arg(shown(path)));
    case Stop::Memory:
      throw DocumentError(DocumentProblem::TooLarge, path,
                          QString("%1: reading this PDF took more than %2 MiB of memory (a content stream that "
                                  "inflates far beyond the file's size?), so it was stopped and not opened; if it "
                                  "is a real document, print it to a new PDF and add that")
                              .arg(shown(path))
                              .arg(memory_limit >> 20));
    case Stop::Time:
      throw DocumentError(DocumentProblem::Broken, path,
                          QString("%1: reading this PDF did not finish within %2 s (a page tree nested thousands of "
                                  "levels deep, or content built to make readers hang?), so it was stopped and not "
                                  "opened; if it is a real document, print it to a new PDF and add that")
                              .arg(shown(path), seconds(limit_ms)));
    case Stop::None:
      break;
  }
  QDataStream in(answer);
  quint32 magic = 0, version = 0;
  bool ok = false;
  in >> magic >> version >> ok;
  if (worker.exitStatus() != QProcess::NormalExit || magic != kAnswerMagic || version != kAnswerVersion ||
      in.status() != QDataStream::Ok)
    throw DocumentError(DocumentProblem::Broken, path,
                        QString("%1: the PDF reader stopped on this file without an answer (%2), so it was not "
                                "opened; open it in a PDF viewer to check it, or print it to a new PDF")
                            .arg(shown(path), worker.exitStatus() == QProcess::CrashExit
                                                  ? QString("it crashed")
                                                  : QString("exit code %1").arg(worker.exitCode())));
  if (!ok) {
    qint32 problem = 0;
    QString message;
    in >> problem >> message;
    if (problem < 0 || problem > static_cast<int>(DocumentProblem::Cancelled))
      problem = static_cast<int>(DocumentProblem::Broken);
    throw DocumentError(static_cast<DocumentProblem>(problem), path, message);
  }
  Document doc;
  if (!read_document(in, &doc))
    throw DocumentError(
        DocumentProblem::Broken, path,
        QString("%1: the PDF reader's answer was cut short, so the PDF was not opened; try again").arg(shown(path)));
  doc.path = path;
  return doc;
}

}  // namespace

}  // namespace folio::docs
