"""XML data files, read and written as python-icat 1.7.0 does (ICAT-FACTS §5.2).

Reading streams over the ``<data>`` chunks with lxml's pull parser and
throws each chunk away once it is parsed, so memory is bounded by the
largest chunk, not the file.  The parser is locked down: no entity
expansion, no DTD loading, no network; a document that declares a DOCTYPE
at all is refused, since no ICAT data file has one and it is the carrier of
entity-expansion and external-entity attacks.  Comments and processing
instructions are dropped wherever they are (python-icat crashes on them).

Writing reproduces python-icat's bytes: the XML declaration and
``<icatdata>`` as raw text, a pretty-printed ``<head>``, one pretty-printed
``<data>`` per non-empty chunk, ASCII output with numeric character
references.  Objects are serialized as they arrive -- each one written as
the text lxml's pretty printer would give it -- so a chunk is never held in
memory as a whole.
"""

from __future__ import annotations

import datetime
import re

from lxml import etree

import icatdump
from icatdump import limits
from icatdump.dumpfile import (DataFileError, DumpFileReader, DumpFileWriter, RawObject,
                               RawRef, Record)
from icatdump.schema import MANY, ONE
from icatdump.streams import refuse_other_encoding
from icatdump.types import to_text

_PARSER_OPTIONS = dict(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
    remove_comments=True, remove_pis=True)


class XMLDumpFileReader(DumpFileReader):
    """Read an XML data file chunk by chunk.

    Besides what python-icat writes, it reads what python-icat's reader
    accepts: references by attributes (``<sample name="x"
    investigation.ref="inv_1"/>``), ``<xxxRef id=...>`` declarations of
    existing objects, the lower-case tag spellings, the old alias names
    and the legacy 4.x layout.
    """

    mode = "rb"

    def __init__(self, client, infile):
        super().__init__(client, infile)
        self._tag_specs: dict[str, dict] = {}     # tag -> field_specs, {} if unknown

    def getdata(self):
        """Iterate over the ``<data>`` elements, each cleared after use."""
        source = _MeasuredInput(self.infile, self.name,
                               limits.value_size(self.max_value_size),
                               limits.chunk_size(self.max_chunk_size))
        parsed = _ParsedChunks(source)
        checked = False
        try:
            for data in parsed:
                if not checked:
                    _refuse_doctype(data)
                    checked = True
                parent = data.getparent()
                if parent is None or parent.getparent() is not None:
                    raise DataFileError("<data> is allowed only directly inside the root element",
                                        line=data.sourceline)
                _check_root(parent)
                yield data
                # Drop the chunk and the emptied chunks before it: the root
                # must not grow by one element per chunk.
                data.clear(keep_tail=False)
                while data.getprevious() is not None:
                    del parent[0]
            # A document without chunks must still be an ICAT data file.
            _check_root(parsed.root)
        except etree.XMLSyntaxError as exc:
            raise DataFileError("XML syntax error: %s" % exc.msg,
                                line=exc.lineno or None) from None

    def parse_chunk(self, data):
        """Turn each child of ``<data>`` into a :class:`RawObject`."""
        for elem in data:
            if not isinstance(elem.tag, str):
                continue        # comments, PIs, entity nodes: never data
            if elem.tag.endswith("Ref"):
                yield RawObject(elem.tag, elem.get("id"),
                                [(k, v) for k, v in elem.items() if k != "id"],
                                elem.sourceline, ref_only=True)
                continue
            yield self._object(elem, elem.tag, elem.get("id"))

    def _object(self, elem, tag, key):
        """An object element: its sub-elements, interpreted by the schema.

        The schema decides whether a sub-element is a value, a reference or
        an embedded child; names the schema does not know are passed on as
        text for the base class to report.
        """
        specs = self._tag_specs.get(tag)
        if specs is None:
            try:
                specs = self.field_specs(self.schema.by_instance_name(tag))
            except KeyError:
                specs = {}
            self._tag_specs[tag] = specs
        fields = []
        append = fields.append
        single = set()      # names of the one-value fields given so far
        for sub in elem:
            name = sub.tag
            spec = specs.get(name)
            if spec is not None:
                kind = spec[1]
                if kind is MANY:
                    append((name, self._object(sub, spec[2].instance_name, None)))
                    continue
                if name in single:
                    _given_twice(name, tag, sub, key)
                single.add(name)
                if kind is ONE:
                    # A plain key string is the common case's RawObject form.
                    ref = sub.get("ref")
                    append((name, ref if ref else _reference(sub)))
                    continue
            elif name.__class__ is not str:
                continue        # comments, PIs, entity nodes: never data
            elif name in single:
                _given_twice(name, tag, sub, key)
            else:
                single.add(name)
            if len(sub):
                raise DataFileError("unexpected elements inside <%s> of <%s>" % (name, tag),
                                    line=sub.sourceline)
            append((name, sub.text))
        return RawObject(tag, key, fields, elem.sourceline)


def _given_twice(name, tag, sub, key):
    """A one-value field written twice: which one was meant is not known."""
    raise DataFileError("<%s> given twice in <%s>" % (name, tag), line=sub.sourceline, key=key)


class _ParsedChunks:
    """The ``<data>`` elements of ``source`` in the order the parser
    completes them; ``root`` once the input has ended.

    The parser is fed by hand (what iterparse does inside) for one reason:
    when a block holds the end of a chunk and, after it, a syntax error,
    lxml 6.2's iterparse raises the error at once and the chunk is never
    handed out, so the error was blamed on the chunk before it and the
    good chunk lost.  A pull parser keeps the events it made before the
    error: they are handed out first, the error raised after them.
    """

    #: The bytes read per feed, as iterparse reads them.
    BLOCK = 1 << 15

    def __init__(self, source):
        self._source = source
        self._parser = etree.XMLPullParser(events=("end",), tag="data", **_PARSER_OPTIONS)
        self.root = None

    def __iter__(self):
        parser, failure, ended = self._parser, None, False
        while not ended:
            block = self._source.read(self.BLOCK)
            ended = not block
            try:
                if ended:
                    self.root = parser.close()
                else:
                    parser.feed(block)
            except etree.XMLSyntaxError as exc:
                if ended:
                    # A document cut short: the parser ends the elements
                    # still open, and their end events are no chunks.
                    raise
                failure = exc
            for _, data in parser.read_events():
                yield data
            if failure is not None:
                raise failure


class _MeasuredInput:
    """The binary input on its way to the parser, measured (icatdump/limits.py).

    libxml2 builds a whole text node, attribute value, comment or processing
    instruction before it hands anything out, and its push parser (which
    iterparse is) buffers all of it before its own 10 MB check: a 2 GiB
    attribute took 2.1 GB and crashed the process.  So the bytes are
    measured here, before the parser sees them: every run without a ``<``
    (a tag with its attributes and the text after it; neither may hold a
    literal ``<``), every comment, CDATA section and processing instruction
    (which may), and every chunk (from one ``</data>`` to the next).  That
    costs a few ``bytes.find`` and ``count`` calls per block read, not work
    per byte.  A DOCTYPE is refused where it starts: its internal subset
    would be buffered whole as well.  A UTF-16 or UTF-32 file is refused by
    name: its ``<`` bytes are not the markup this counts.
    """

    def __init__(self, raw, name, max_value: int, max_chunk: int):
        self._raw = raw
        self.name = name
        self._max_value, self._max_chunk = max_value, max_chunk
        self._carry = b""           # the bytes from _pos on, not yet decided
        self._pos = 0               # offset of the first byte not yet scanned
        self._run = self._run_line = 0      # where the current run without '<' began
        self._chunk = self._chunk_line = 0  # where the current chunk began
        self._special = None        # (end marker, what, line) of a comment... being passed
        self._special_start = 0
        self._line_pos, self._line_no = 0, 1    # line number at offset _line_pos
        self._head: bytes | None = b""     # the first bytes, until the XML declaration is whole

    def read(self, size=-1) -> bytes:
        data = self._raw.read(size)
        if self._head is not None:
            self._check_encoding(data)
        self._scan(data, not data)
        return data

    def _check_encoding(self, data: bytes):
        """Refuse an encoding in which a ``<`` byte may be part of another
        character: these checks would count it, and undercount a value."""
        head = self._head = (self._head or b"") + data
        if data and b">" not in head and len(head) < 1024:
            return
        self._head = None
        refuse_other_encoding(head, self.name)
        m = _DECLARED_ENCODING.match(head)
        if m and not _BYTE_SAFE_ENCODING.fullmatch(m.group(1).decode("ascii")):
            raise DataFileError("XML in the encoding %s: data files are UTF-8 (a single-byte "
                                "encoding such as ISO-8859-1 is read too)"
                                % m.group(1).decode("ascii"), self.name, line=1)

    def _line_at(self, buf, base, k) -> int:
        """The line number at ``buf[k]``; asked for ascending offsets only."""
        self._line_no += buf.count(b"\n", self._line_pos - base, k)
        self._line_pos = base + k
        return self._line_no

    def _scan(self, data: bytes, final: bool):
        buf = self._carry + data if self._carry else data
        base, n, i = self._pos, len(buf), 0
        while i < n:
            if self._special is not None:
                end, what, line = self._special
                k = buf.find(end, i)
                if base + (n if k < 0 else k) - self._special_start > self._max_value:
                    self._refuse("a %s" % what, line, self._max_value, limits.VALUE_ENV)
                if k < 0:
                    i = max(i, n - len(end) + 1)
                    break
                i = k + len(end)
                self._special = None
                self._run, self._run_line = base + i, self._line_at(buf, base, i)
                continue
            j = buf.find(b"<!", i)
            q = buf.find(b"<?", i, j if j >= 0 else n)
            j = q if q >= 0 else j
            if j < 0:
                # A '<' among the last bytes may begin a marker or ``</data>``.
                last = -1 if final else buf.rfind(b"<", max(i, n - 8), n)
                j = last if last >= 0 else n
                self._runs(buf, base, i, j)
                i = j
                break
            self._runs(buf, base, i, j)
            i = j
            head = buf[j:j + 9]
            if head.startswith(b"<!--"):
                self._begin(b"-->", "comment", buf, base, j, 4)
            elif head.startswith(b"<![CDATA["):
                self._begin(b"]]>", "CDATA section", buf, base, j, 9)
            elif head.startswith(b"<?"):
                self._begin(b"?>", "processing instruction", buf, base, j, 2)
            elif len(head) < 9 and b"<![CDATA["[:len(head)] == head or head == b"<!-":
                break       # the rest of the marker comes with the next block
            else:
                raise DataFileError(_NO_DOCTYPE, self.name, line=self._line_at(buf, base, j))
            i = self._special_skip
        self._carry = buf[i:] if not final else b""
        self._line_at(buf, base, i)
        self._pos = base + i

    def _begin(self, end, what, buf, base, j, length):
        self._special = (end, what, self._line_at(buf, base, j))
        self._special_start = base + j
        self._special_skip = j + length

    def _runs(self, buf, base, i, j):
        """Check the runs without ``<`` in ``buf[i:j]`` (no comment or the like there)."""
        first = buf.find(b"<", i, j)
        if base + (j if first < 0 else first) - self._run > self._max_value:
            self._refuse("a value (text, or a tag with its attributes)", self._run_line,
                         self._max_value, limits.VALUE_ENV)
        if first >= 0:
            if j - first > self._max_value:
                # A ceiling below the block size: the runs inside count too.
                at = first
                while at >= 0:
                    nxt = buf.find(b"<", at + 1, j)
                    if nxt - at > self._max_value:
                        self._refuse("a value (text, or a tag with its attributes)",
                                     self._line_at(buf, base, at), self._max_value,
                                     limits.VALUE_ENV)
                    at = nxt
            end = buf.rfind(b"</data>", i, j)
            if end >= 0:
                self._chunk, self._chunk_line = base + end + 7, self._line_at(buf, base, end)
            last = buf.rfind(b"<", first, j)
            self._run, self._run_line = base + last, self._line_at(buf, base, last)
        if base + j - self._chunk > self._max_chunk:
            self._refuse("a chunk", self._chunk_line, self._max_chunk, limits.CHUNK_ENV)

    def _refuse(self, what, line, limit, env):
        raise DataFileError("%s longer than %s, the limit (%s raises it)"
                            % (what, limits.describe(limit), env), self.name, line=line)


#: The encoding an XML declaration names.
_DECLARED_ENCODING = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*<\?xml\s[^>]*?encoding\s*=\s*[\"']([A-Za-z][\w.:-]*)[\"']")
#: Encodings in which every ``<`` byte is a ``<``.
_BYTE_SAFE_ENCODING = re.compile(r"utf-?8|(us-?)?ascii|iso[-_]?8859[-_]\d+|latin-?\d"
                                 r"|(windows|cp)-?125\d", re.IGNORECASE)


def _reference(elem) -> RawRef:
    """A many-to-one element: ``ref="KEY"`` or a reference by attributes."""
    ref = elem.get("ref")
    if ref is not None:
        return RawRef(key=ref)
    attrs = {k: v for k, v in elem.items() if k != "id"}
    if not attrs:
        raise DataFileError("<%s> names no object: it needs ref=\"KEY\" or attributes"
                            % elem.tag, line=elem.sourceline)
    return RawRef(attrs=attrs)


def _check_root(root):
    if root is None or root.tag != "icatdata":
        raise DataFileError("not an ICAT data file: the root element is <%s>, not <icatdata>"
                            % (root.tag if root is not None else ""), line=1)


_NO_DOCTYPE = "DOCTYPE declarations are not allowed in ICAT data files"


def _refuse_doctype(elem):
    docinfo = elem.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise DataFileError(_NO_DOCTYPE, line=1)


class XMLDumpFileWriter(DumpFileWriter):
    """Write an XML data file byte-identical to python-icat's."""

    mode = "wb"

    def __init__(self, client, outfile):
        super().__init__(client, outfile)
        self._in_chunk = False

    def head(self):
        head = etree.Element("head")
        etree.SubElement(head, "date").text = \
            datetime.datetime.now(datetime.timezone.utc).isoformat()
        etree.SubElement(head, "service").text = self.client.url
        etree.SubElement(head, "apiversion").text = str(self.client.apiversion)
        etree.SubElement(head, "generator").text = icatdump.GENERATOR
        self.outfile.write(b'<?xml version="1.0" encoding="utf-8"?>\n<icatdata>\n')
        self.outfile.write(etree.tostring(head, pretty_print=True))

    def startdata(self):
        self._close_chunk()

    def write_record(self, key, record: Record):
        if not self._in_chunk:
            # Opened lazily: an empty chunk leaves no trace in the file.
            self.outfile.write(b"<data>\n")
            self._in_chunk = True
        tag = record.type.instance_name
        try:
            out = ['  <%s id="%s"' % (tag, _attr(key))]
            _content(out, tag, record, "  ")
        except ValueError as exc:   # a character XML cannot carry
            raise ValueError("%s: %s" % (key, exc)) from None
        self.outfile.write("".join(out).encode("ascii", "xmlcharrefreplace"))

    def finalize(self):
        self._close_chunk()
        self.outfile.write(b"</icatdata>\n")

    def _close_chunk(self):
        if self._in_chunk:
            self.outfile.write(b"</data>\n")
            self._in_chunk = False


# Serializing objects: the text lxml's pretty printer gives, written directly.
# Building an lxml tree per object and serializing it cost several times what
# the text costs.  What lxml does, and so what is done here: elements whose
# content is only elements are indented two spaces a level, text-only
# elements stay on one line, an empty element is ``<x/>``, an empty text
# ``<x></x>``; text escapes ``& < >`` and CR, attribute values also ``"``,
# TAB and LF; output is ASCII with decimal character references; a string
# with a character XML cannot carry is refused with lxml's message.  Only
# a string that is not ``isprintable()`` can hold one, so only those few
# are searched (searching every object's text cost 5% of a dump).
# tests/test_backends.py compares this with lxml's own serialization.

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_XML_MESSAGE = ("All strings must be XML compatible: Unicode or ASCII, "
                    "no NULL bytes or control characters")


def _text(value) -> str:
    """An attribute value as element text."""
    cls = value.__class__
    if cls is int or cls is float:
        return str(value)           # digits only: nothing to escape
    return _escape_text(value if cls is str else to_text(value))


def _escape_text(s: str) -> str:
    if not s.isprintable() and _NOT_XML.search(s):
        raise ValueError(_NOT_XML_MESSAGE)
    if "&" in s or "<" in s or ">" in s or "\r" in s:
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
            .replace("\r", "&#13;")
    return s


def _attr(s: str) -> str:
    """An XML attribute value (keys: ASCII letters, digits and ``=_-()`` as a rule)."""
    if not s.isprintable() and _NOT_XML.search(s):
        raise ValueError(_NOT_XML_MESSAGE)
    if "&" in s or "<" in s or ">" in s or '"' in s or "\r" in s or "\n" in s or "\t" in s:
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
            .replace('"', "&quot;").replace("\r", "&#13;").replace("\n", "&#10;") \
            .replace("\t", "&#9;")
    return s


def _content(out: list, tag: str, record: Record, indent: str):
    """Append the rest of an element whose start tag (without its ``>``) is
    already in ``out``, indented as ``pretty_print`` would at ``indent``."""
    if not (record.attrs or record.refs or record.children):
        out.append("/>\n")
        return
    inner = indent + "  "
    out.append(">\n")
    for name, value in record.attrs:
        # _text inlined for strings, most values: this loop runs per value.
        if value.__class__ is str:
            if not value.isprintable() or "&" in value or "<" in value or ">" in value:
                value = _escape_text(value)
        else:
            value = _text(value)
        out.append(f"{inner}<{name}>{value}</{name}>\n")
    for name, key in record.refs:
        out.append(f'{inner}<{name} ref="{_attr(key)}"/>\n')
    for name, children in record.children:
        for child in children:
            out.append(f"{inner}<{name}")
            _content(out, name, child, inner)
    out.append(f"{indent}</{tag}>\n")


# ---------------------------------------------------------------------------
# Recognizing a file (see icatdump.inputs)
# ---------------------------------------------------------------------------

def sniff(head: bytes) -> bool:
    """Whether a file's first bytes are XML: markup first, after an
    optional byte order mark and white space."""
    return head.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"<")


_HEAD = re.compile(r"<head>(.*?)</head>", re.S)


def read_header(stream) -> dict:
    """The fields of ``<head>`` (date, service, apiversion, generator) from
    the first bytes of a file; a missing field is left out.  python-icat's
    reader ignores the header, so the reader does not read it either."""
    m = _HEAD.search(stream.read().decode("utf-8", "replace"))
    result = {}
    for name in ("date", "service", "apiversion", "generator"):
        f = re.search(r"<%s>(.*?)</%s>" % (name, name), m.group(1), re.S) if m else None
        if f:
            result[name] = f.group(1).strip()
    return result


reader = XMLDumpFileReader
writer = XMLDumpFileWriter
