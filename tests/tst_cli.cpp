#include <QtTest>
class Stub_tst_cli : public QObject { Q_OBJECT private slots: void todo() { QSKIP("not written yet"); } };
QTEST_APPLESS_MAIN(Stub_tst_cli)
#include "tst_cli.moc"
