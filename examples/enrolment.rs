//! Course enrolment, a decision across streams: a course holds at most its capacity, and a
//! student takes at most three courses. Neither rule fits in one stream (the enrolments of a
//! course are in its students' streams), so the decision model folds the events tagged with
//! the course and the student, and appends on the condition that none of them changed.
//!
//! Run with `cargo run --example enrolment` (in memory), or with
//! `DATABASE_URL=postgres://... cargo run --features postgres --example enrolment`.

use std::collections::{BTreeMap, BTreeSet};

use eventsource::prelude::*;
use eventsource::{DecideError, DecisionStore};

/// The most courses one student takes.
const COURSES_PER_STUDENT: usize = 3;

// Events: tagged with the course and the student they are about.

/// A course was opened with a capacity.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "course.defined")]
struct CourseDefined {
    #[tag]
    course: String,
    capacity: usize,
}

/// A student took a seat in a course.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "student.subscribed")]
struct StudentSubscribed {
    #[tag]
    course: String,
    #[tag]
    student: String,
}

// Commands.

#[derive(Clone, Debug)]
struct DefineCourse {
    course: String,
    capacity: usize,
}

#[derive(Clone, Debug)]
struct Subscribe {
    course: String,
    student: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum EnrolmentError {
    #[error("course `{0}` exists already")]
    CourseExists(String),
    #[error("course `{0}` does not exist")]
    NoSuchCourse(String),
    #[error("course `{0}` is full")]
    CourseFull(String),
    #[error("`{0}` takes {COURSES_PER_STUDENT} courses already")]
    TooManyCourses(String),
    #[error("`{student}` is in `{course}` already")]
    AlreadySubscribed { course: String, student: String },
}

/// The decision model: what the facts of a command's boundary say about courses and students.
#[derive(Aggregate, Default, Serialize, Deserialize, Debug)]
#[aggregate(
    name = "enrolment",
    error = EnrolmentError,
    events(CourseDefined, StudentSubscribed),
    commands(DefineCourse, Subscribe),
    decision
)]
struct Enrolment {
    capacity: BTreeMap<String, usize>,
    students_of: BTreeMap<String, BTreeSet<String>>,
    courses_of: BTreeMap<String, BTreeSet<String>>,
}

impl Apply<CourseDefined> for Enrolment {
    fn apply(&mut self, e: &CourseDefined) {
        self.capacity.insert(e.course.clone(), e.capacity);
    }
}

impl Apply<StudentSubscribed> for Enrolment {
    fn apply(&mut self, e: &StudentSubscribed) {
        let students = self.students_of.entry(e.course.clone()).or_default();
        students.insert(e.student.clone());
        let courses = self.courses_of.entry(e.student.clone()).or_default();
        courses.insert(e.course.clone());
    }
}

impl Handle<DefineCourse> for Enrolment {
    fn handle(&self, c: DefineCourse) -> Result<Events<Self>, EnrolmentError> {
        if self.capacity.contains_key(&c.course) {
            return Err(EnrolmentError::CourseExists(c.course));
        }
        Ok(Events::one(CourseDefined {
            course: c.course,
            capacity: c.capacity,
        }))
    }
}

impl Handle<Subscribe> for Enrolment {
    fn handle(&self, c: Subscribe) -> Result<Events<Self>, EnrolmentError> {
        let Some(&capacity) = self.capacity.get(&c.course) else {
            return Err(EnrolmentError::NoSuchCourse(c.course));
        };
        let students = self.students_of.get(&c.course).map_or(0, BTreeSet::len);
        let courses = self.courses_of.get(&c.student);
        if courses.is_some_and(|courses| courses.contains(&c.course)) {
            return Err(EnrolmentError::AlreadySubscribed {
                course: c.course,
                student: c.student,
            });
        }
        if students >= capacity {
            return Err(EnrolmentError::CourseFull(c.course));
        }
        if courses.map_or(0, BTreeSet::len) >= COURSES_PER_STUDENT {
            return Err(EnrolmentError::TooManyCourses(c.student));
        }
        Ok(Events::one(StudentSubscribed {
            course: c.course,
            student: c.student,
        }))
    }
}

// The boundaries: which facts each command depends on, and where its events go.

fn course(id: &str) -> QueryItem {
    QueryItem::tagged([Tag::new("course", id)])
}

impl ConsistencyBoundary<DefineCourse> for Enrolment {
    fn boundary(c: &DefineCourse) -> Boundary {
        let query = Query::new().item(course(&c.course).named(["course.defined"]));
        Boundary::new(StreamId::new("course", &c.course), query)
    }
}

impl ConsistencyBoundary<Subscribe> for Enrolment {
    fn boundary(c: &Subscribe) -> Boundary {
        // The course (its definition and every seat taken) and the student's subscriptions.
        let query = Query::new().item(course(&c.course)).item(
            QueryItem::tagged([Tag::new("student", &c.student)]).named(["student.subscribed"]),
        );
        Boundary::new(StreamId::new("student", &c.student), query)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Twenty students race for five seats; one student tries a fourth course.
async fn run<S: DecisionStore + Clone>(store: S) -> Result<(), BoxError> {
    let enrolments = Decisions::<Enrolment, _>::new(store.clone());
    let courses = [
        ("rust-101", 5),
        ("sql-201", 30),
        ("ddd-301", 30),
        ("cqrs-401", 30),
        ("tdd-501", 30),
    ];
    for (id, capacity) in courses {
        enrolments
            .execute(DefineCourse {
                course: id.into(),
                capacity,
            })
            .await?;
    }

    let mut racers = Vec::new();
    for n in 0..20 {
        let enrolments = Decisions::<Enrolment, _>::new(store.clone());
        racers.push(tokio::spawn(async move {
            let student = format!("student-{n:02}");
            let outcome = enrolments
                .execute(Subscribe {
                    course: "rust-101".into(),
                    student: student.clone(),
                })
                .await;
            (student, outcome)
        }));
    }
    let mut seated = Vec::new();
    for racer in racers {
        match racer.await? {
            (student, Ok(done)) => seated.push((student, done.attempts)),
            (
                _,
                Err(DecideError::Rejected {
                    source: EnrolmentError::CourseFull(_),
                    ..
                }),
            ) => {}
            (_, Err(other)) => return Err(other.into()),
        }
    }
    println!(
        "rust-101 (capacity 5): {} of 20 students got a seat",
        seated.len()
    );
    for (student, attempts) in &seated {
        println!("  {student} (decided {attempts} time(s))");
    }
    assert_eq!(seated.len(), 5, "the capacity holds under contention");

    let mut refused = 0;
    for course in ["sql-201", "ddd-301", "cqrs-401", "tdd-501"] {
        let outcome = enrolments
            .execute(Subscribe {
                course: course.into(),
                student: "ada".into(),
            })
            .await;
        match outcome {
            Ok(_) => println!("ada takes {course}"),
            Err(DecideError::Rejected { source, .. }) => {
                refused += 1;
                println!("ada cannot take {course}: {source}");
            }
            Err(other) => return Err(other.into()),
        }
    }
    let (state, _) = enrolments
        .load(&Query::new().item(QueryItem::tagged([Tag::new("student", "ada")])))
        .await?;
    println!("ada's courses: {:?}", state.courses_of.get("ada"));
    assert_eq!(refused, 1, "the fourth course is refused");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let schema = format!("enrolment_{}", uuid::Uuid::now_v7().simple());
        let store = eventsource::postgres::PostgresStore::builder()
            .schema(schema.as_str())
            .connect(&url)
            .await?;
        store.migrate().await?;
        println!("store: PostgreSQL, schema `{schema}`\n");
        return run(store).await;
    }
    println!("store: in memory\n");
    run(MemoryStore::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defined(course: &str, capacity: usize) -> CourseDefined {
        CourseDefined {
            course: course.into(),
            capacity,
        }
    }

    fn subscribed(course: &str, student: &str) -> StudentSubscribed {
        StudentSubscribed {
            course: course.into(),
            student: student.into(),
        }
    }

    fn subscribe(course: &str, student: &str) -> Subscribe {
        Subscribe {
            course: course.into(),
            student: student.into(),
        }
    }

    #[test]
    fn a_seat_is_taken_while_there_is_room() {
        Enrolment::given([defined("c", 2)])
            .and(subscribed("c", "bob"))
            .when(subscribe("c", "ada"))
            .then([subscribed("c", "ada")]);
    }

    #[test]
    fn a_full_course_refuses() {
        Enrolment::given([defined("c", 1)])
            .and(subscribed("c", "bob"))
            .when(subscribe("c", "ada"))
            .then_error(EnrolmentError::CourseFull("c".into()));
    }

    #[test]
    fn a_student_takes_at_most_three_courses() {
        Enrolment::given([defined("d", 9)])
            .and(subscribed("a", "ada"))
            .and(subscribed("b", "ada"))
            .and(subscribed("c", "ada"))
            .when(subscribe("d", "ada"))
            .then_error(EnrolmentError::TooManyCourses("ada".into()));
    }
}
