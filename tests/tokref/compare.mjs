// Compares prunequant's token ids with the reference ids written by build_fixtures.mjs, and checks
// that prunequant's ids decode back to the text (with prunequant detokenize) (all texts here are lossless under these
// tokenizers: byte-level BPE, or SentencePiece BPE with byte fallback and no normalization beyond
// " " -> "\u2581"), except SentencePiece-style texts holding added tokens like "<unk>", which are
// not checked. Decoding follows each tokenizer.json's decoder.
//
//   node compare.mjs FIXTURE_DIR OURS_DIR MODEL...
//
// OURS_DIR/<model>/<name>.ids is `prunequant tokenize` output (OURS_DIR/<model>/<name>.err its
// stderr). Prints one line per failure, a summary per model, and "N passed, M failed"; exits 1 on
// any failure.
import fs from 'node:fs';
import path from 'node:path';

const [fix, ours, ...models] = process.argv.slice(2);
const texts = fs.readFileSync(path.join(fix, 'manifest.tsv'), 'utf8').split('\n').filter((l) => l)
    .map((l) => { const [name, file] = l.split('\t'); return { name, file }; });
const readIds = (f) => {
    const s = fs.readFileSync(f, 'utf8').trim();
    return s ? s.split(/\s+/).map(Number) : [];
};

// GPT-2 bytes_to_unicode, inverted
const u2b = new Map();
{
    const bs = [];
    for (let b = 33; b <= 126; b++) bs.push(b);
    for (let b = 161; b <= 172; b++) bs.push(b);
    for (let b = 174; b <= 255; b++) bs.push(b);
    const cs = [...bs];
    let n = 0;
    for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
    bs.forEach((b, i) => u2b.set(String.fromCodePoint(cs[i]), b));
}

function decoderFor(tj) {
    const pieces = [];
    for (const [s, id] of Object.entries(tj.model.vocab)) pieces[id] = s;
    const added = new Map(tj.added_tokens.map((t) => [t.id, t.content]));
    const byteLevel = tj.decoder.type === 'ByteLevel';
    return (ids) => {
        const out = [];
        for (const id of ids) {
            if (added.has(id)) {
                out.push(...Buffer.from(added.get(id), 'utf8'));
                continue;
            }
            const p = pieces[id];
            if (p === undefined) throw new Error(`id ${id} out of vocabulary`);
            if (byteLevel) {
                for (const c of p) {
                    if (!u2b.has(c)) throw new Error(`piece ${JSON.stringify(p)} is not byte-level`);
                    out.push(u2b.get(c));
                }
            } else if (/^<0x[0-9A-F]{2}>$/.test(p)) {
                out.push(parseInt(p.slice(3, 5), 16));
            } else {
                out.push(...Buffer.from(p.replaceAll('\u2581', ' '), 'utf8'));
            }
        }
        let b = Buffer.from(out);
        if (!byteLevel && b.length && b[0] === 0x20) b = b.subarray(1); // Strip(" ", start 1)
        return b;
    };
}

const show = (ids, i, pieces) => ids.slice(Math.max(0, i - 3), i + 5)
    .map((id) => `${id}:${JSON.stringify(pieces[id] ?? '?')}`).join(' ');
let pass = 0, fail = 0;
for (const m of models) {
    const tj = JSON.parse(fs.readFileSync(path.join(fix, m, 'tokenizer.json'), 'utf8'));
    const pieces = [];
    for (const [s, id] of Object.entries(tj.model.vocab)) pieces[id] = s;
    for (const t of tj.added_tokens) pieces[t.id] = t.content;
    const decode = decoderFor(tj);
    let idOk = 0, decOk = 0, tokens = 0, lossy = 0;
    const byteLevel = tj.decoder.type === 'ByteLevel';
    const specials = tj.added_tokens.map((t) => Buffer.from(t.content));
    const bad = (what) => { fail++; console.log(`FAIL ${m} ${what}`); };
    for (const t of texts) {
        const ref = readIds(path.join(fix, m, t.name + '.ids'));
        const of = path.join(ours, m, t.name + '.ids');
        let got = null;
        try { got = readIds(of); } catch { /* missing */ }
        const err = fs.existsSync(path.join(ours, m, t.name + '.err')) ?
            fs.readFileSync(path.join(ours, m, t.name + '.err'), 'utf8').trim() : '';
        if (!got || err) {
            bad(`${t.name}: prunequant tokenize failed: ${err.slice(0, 300)}`);
            bad(`${t.name}: decode (no ids)`);
            continue;
        }
        tokens += ref.length;
        let i = 0;
        while (i < ref.length && i < got.length && ref[i] === got[i]) i++;
        if (i === ref.length && i === got.length) {
            pass++;
            idOk++;
        } else {
            bad(`${t.name}: ids differ at ${i} (ref ${ref.length} ids, ours ${got.length}); ` +
                `ref [${show(ref, i, pieces)}] ours [${show(got, i, pieces)}]`);
        }
        const text = fs.readFileSync(t.file);
        if (!byteLevel && specials.some((sp) => text.includes(sp))) {
            lossy++; // split at added tokens, each piece gets its own dummy-prefix space: not lossless
            continue;
        }
        let dec;
        // our own decoder (prunequant detokenize); the JS decoder only explains a mismatch
        try { dec = fs.readFileSync(path.join(ours, m, t.name + '.dec')); } catch { dec = Buffer.from('<no .dec>'); }
        if (Buffer.compare(dec, text) !== 0) {
            let js;
            try { js = decode(got); } catch (e) { js = Buffer.from('<' + e.message + '>'); }
            if (Buffer.compare(js, text) === 0) console.log(`note: ${m} ${t.name}: the tokenizer.json decoder gets it right`);
        }
        if (Buffer.compare(dec, text) === 0) {
            pass++;
            decOk++;
        } else {
            let k = 0;
            while (k < dec.length && k < text.length && dec[k] === text[k]) k++;
            bad(`${t.name}: decode(ours) != text at byte ${k}: ` +
                `${JSON.stringify(dec.subarray(k, k + 20).toString())} vs ${JSON.stringify(text.subarray(k, k + 20).toString())}`);
        }
    }
    console.log(`${m}: ids match ${idOk}/${texts.length} texts (${tokens} reference tokens), ` +
        `decode round trip ${decOk}/${texts.length - lossy}` + (lossy ? ` (${lossy} not lossless: they hold added tokens)` : ''));
}
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
