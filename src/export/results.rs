//! A result list as Markdown (a table per query, each page a `file://…#page=N` link) or CSV (one
//! row per hit), and a hit's citation, `file, p. N`.

use super::{csv, markdown};
use crate::ui::format::file_name;
use pagesight_engine::event::SearchHit;
use pagesight_engine::SearchMode;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Csv,
}

impl Format {
    /// By the file's extension: `.md` / `.markdown`, `.csv`.
    pub fn from_path(path: &Path) -> Result<Format, String> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("md" | "markdown") => Ok(Format::Markdown),
            Some("csv") => Ok(Format::Csv),
            _ => Err(format!(
                "{}: the results are exported as Markdown (.md) or CSV (.csv); name the file so",
                path.display()
            )),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            Format::Csv => "csv",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Markdown => "Markdown",
            Format::Csv => "CSV",
        }
    }
}

/// One query's results as exported: the hits in the order shown.
pub struct ResultList<'a> {
    pub query: &'a str,
    pub mode: SearchMode,
    pub hits: Vec<&'a SearchHit>,
}

/// How a researcher cites the page: `paper.pdf, p. 12`.
pub fn reference(hit: &SearchHit) -> String {
    format!("{}, p. {}", file_name(&hit.file), hit.page)
}

pub fn render(format: Format, lists: &[ResultList<'_>]) -> String {
    match format {
        Format::Markdown => to_markdown(lists),
        Format::Csv => to_csv(lists),
    }
}

fn to_markdown(lists: &[ResultList<'_>]) -> String {
    let mut out = String::from("# Pagesight results\n");
    for list in lists {
        out.push_str(&format!(
            "\n## “{}” ({} search, {} results)\n\n",
            markdown::inline(list.query),
            list.mode.name(),
            list.hits.len()
        ));
        out.push_str("| # | score | page | file | text |\n|--:|--:|--:|---|---|\n");
        for h in &list.hits {
            let link = format!(
                "[{}](<{}#page={}>)",
                markdown::inline(&file_name(&h.file)),
                markdown::file_url(&h.file),
                h.page
            );
            let text = h.snippet.as_ref().map_or(String::new(), |s| {
                s.pieces()
                    .into_iter()
                    .map(|(piece, term)| match (term, markdown::inline(piece)) {
                        (true, t) => format!("**{t}**"),
                        (false, t) => t,
                    })
                    .collect()
            });
            out.push_str(&format!(
                "| {} | {:.4} | {} | {link} | {text} |\n",
                h.rank, h.score, h.page
            ));
        }
    }
    out
}

fn to_csv(lists: &[ResultList<'_>]) -> String {
    let mut out = String::from("query,mode,rank,score,file,page,title,text\n");
    for list in lists {
        for h in &list.hits {
            let row = [
                csv::text_field(list.query),
                list.mode.name().to_owned(),
                h.rank.to_string(),
                format!("{:.6}", h.score),
                csv::text_field(&h.file.to_string_lossy()),
                h.page.to_string(),
                csv::text_field(h.title.as_deref().unwrap_or("")),
                csv::text_field(h.snippet.as_ref().map_or("", |s| s.text.as_str())),
            ];
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagesight_index::Snippet;

    fn hit(rank: usize, file: &str, text: &str, terms: &[&str]) -> SearchHit {
        let highlighted = terms
            .iter()
            .map(|t| {
                let at = text.find(t).unwrap();
                at..at + t.len()
            })
            .collect();
        SearchHit {
            rank,
            score: 1.5 / rank as f32,
            file: file.into(),
            page: rank as u32 + 2,
            title: Some("A, \"quoted\" title".into()),
            heatmap: None,
            snippet: Some(Snippet {
                text: text.into(),
                highlighted,
            }),
        }
    }

    #[test]
    fn markdown_escapes_cells_and_marks_the_terms() {
        let hits = [
            hit(
                1,
                "/c/My Paper.pdf",
                "…the a|b *attention* heads…",
                &["attention"],
            ),
            hit(2, "/c/x_y.pdf", "plain", &[]),
        ];
        let md = render(
            Format::Markdown,
            &[ResultList {
                query: "attention | heads",
                mode: SearchMode::Hybrid,
                hits: hits.iter().collect(),
            }],
        );
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[2],
            "## “attention \\| heads” (hybrid search, 2 results)"
        );
        assert_eq!(
            lines[6],
            "| 1 | 1.5000 | 3 | [My Paper.pdf](<file:///c/My%20Paper.pdf#page=3>) \
             | …the a\\|b \\***attention**\\* heads… |"
        );
        assert_eq!(
            lines[7],
            "| 2 | 0.7500 | 4 | [x\\_y.pdf](<file:///c/x_y.pdf#page=4>) | plain |"
        );
        // Every row has the header's five cells: no unescaped `|` inside one.
        let cells = |l: &str| l.replace("\\|", "").matches('|').count();
        assert!(lines[4..].iter().all(|l| cells(l) == 6), "{md}");
    }

    #[test]
    fn csv_quotes_and_defuses_document_text() {
        let hits = [hit(1, "/c/a,b.pdf", "=SUM(A1) \"x\"\nnext", &[])];
        let csv = render(
            Format::Csv,
            &[ResultList {
                query: "q",
                mode: SearchMode::Text,
                hits: hits.iter().collect(),
            }],
        );
        assert_eq!(
            csv,
            "query,mode,rank,score,file,page,title,text\n\
             q,text,1,1.500000,\"/c/a,b.pdf\",3,\"A, \"\"quoted\"\" title\",\"'=SUM(A1) \"\"x\"\"\nnext\"\n"
        );
    }

    #[test]
    fn formats_by_extension_and_references() {
        assert_eq!(Format::from_path(Path::new("r.MD")), Ok(Format::Markdown));
        assert_eq!(Format::from_path(Path::new("r.csv")), Ok(Format::Csv));
        assert!(Format::from_path(Path::new("r.txt"))
            .unwrap_err()
            .contains("Markdown (.md) or CSV (.csv)"));
        assert_eq!(
            reference(&hit(4, "/c/paper.pdf", "x", &[])),
            "paper.pdf, p. 6"
        );
    }
}
